import CAppProfiler
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The compiled unwind rows of one image, in memory that does not move
/// (the signal handler holds raw pointers to it during a session).
final class UnwindTable: @unchecked Sendable {
  let rows: UnsafeMutableBufferPointer<cap_unwind_row>
  let start: UInt64
  let end: UInt64

  init(rows: [cap_unwind_row]) {
    self.rows = .allocate(capacity: max(rows.count, 1))
    _ = self.rows.initialize(from: rows)
    start = rows.first?.pc ?? 0
    end = (rows.last?.pc ?? 0) &+ 1
  }

  deinit {
    rows.deallocate()
  }

  var byteCount: Int { rows.count * MemoryLayout<cap_unwind_row>.stride }

  /// Reads `.eh_frame` of a loaded image through its `.eh_frame_hdr`:
  ///   version u8, eh_frame_ptr encoding u8, fde_count encoding u8,
  ///   table encoding u8, eh_frame_ptr (encoded, usually pc-relative sdata4)
  static func build(for image: LoadedImage) -> UnwindTable? {
    guard image.ehFrameHeader != 0,
      let header = UnsafeRawPointer(bitPattern: UInt(image.ehFrameHeader)),
      header.load(as: UInt8.self) == 1
    else { return nil }
    let encoding = header.load(fromByteOffset: 1, as: UInt8.self)
    let field = image.ehFrameHeader + 4
    let ehFrame: UInt64
    switch encoding {
    case 0x1B:  // pcrel | sdata4
      ehFrame = field &+ UInt64(bitPattern: Int64(header.loadUnaligned(fromByteOffset: 4, as: Int32.self)))
    case 0x03:  // udata4
      ehFrame = UInt64(header.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
    case 0x00, 0x04:  // absptr, udata8
      ehFrame = header.loadUnaligned(fromByteOffset: 4, as: UInt64.self)
    default:
      return nil
    }
    // Never read past the loaded segment that holds .eh_frame.
    guard let segment = image.loadSegments.first(where: { $0.contains(ehFrame) }),
      let start = UnsafeRawPointer(bitPattern: UInt(ehFrame))
    else { return nil }
    let memory = UnsafeRawBufferPointer(start: start, count: Int(segment.upperBound - ehFrame))
    let rows = EHFrameParser(memory: memory, runtimeAddress: ehFrame).compile()
    return rows.isEmpty ? nil : UnwindTable(rows: rows)
  }
}

/// The tables of every loaded image for one session, sorted by address,
/// as the `cap_unwind_image` array the handler searches.
final class UnwindTableSet: @unchecked Sendable {
  let images: UnsafeMutableBufferPointer<cap_unwind_image>
  private let tables: [UnwindTable]  // keeps the rows alive
  let built: Int
  let buildNanoseconds: UInt64
  let totalBytes: Int

  init(tables: [UnwindTable], built: Int, buildNanoseconds: UInt64) {
    let sorted = tables.sorted { $0.start < $1.start }
    // Overlapping ranges (should not happen) keep the first.
    var kept: [UnwindTable] = []
    for table in sorted where kept.last.map({ $0.end <= table.start }) ?? true { kept.append(table) }
    self.tables = kept
    images = .allocate(capacity: max(kept.count, 1))
    for (index, table) in kept.enumerated() {
      images[index] = cap_unwind_image(
        start: table.start, end: table.end, rows: UnsafePointer(table.rows.baseAddress), count: UInt64(table.rows.count))
    }
    self.built = built
    self.buildNanoseconds = buildNanoseconds
    totalBytes = kept.reduce(0) { $0 + $1.byteCount }
  }

  deinit {
    images.deallocate()
  }

  var count: Int { tables.count }
  var rowCount: Int { tables.reduce(0) { $0 + $1.rows.count } }
}

/// Tables per image, built once and kept across sessions; images loaded
/// since the last session get theirs before the next one starts.
final class UnwindTables: Sendable {
  static let shared = UnwindTables()

  private let cache = Mutex<[String: UnwindTable?]>([:])

  func tableSet(for imageMap: ImageMap) -> UnwindTableSet {
    let started = ProfilingSession.clock(CLOCK_MONOTONIC)
    return cache.withLock { cache in
      var built = 0
      var tables: [UnwindTable] = []
      var current: Set<String> = []
      for image in imageMap.images {
        current.insert(image.key)
        if let cached = cache[image.key] {
          if let cached { tables.append(cached) }
          continue
        }
        // Reads the image's .eh_frame in memory: pinned, so a dlclose on
        // another thread cannot unmap it under the parser.
        guard let table = image.whileLoaded({ UnwindTable.build(for: image) }) else { continue }
        cache[image.key] = table
        built += 1
        FreedMemory.noteTransientWork()
        if let table { tables.append(table) }
      }
      // Images that were unloaded: drop their tables (a running session
      // keeps its own references).
      for key in cache.keys where !current.contains(key) { cache[key] = nil }
      return UnwindTableSet(
        tables: tables, built: built, buildNanoseconds: ProfilingSession.clock(CLOCK_MONOTONIC) - started)
    }
  }

  func reset() {
    cache.withLock { $0.removeAll() }
  }

  /// The tables a session walks with: every loaded image's with the CFI
  /// unwinder (x86_64), none (frame pointers) otherwise.
  static func forSession(_ options: SessionOptions) -> UnwindTableSet? {
    #if arch(x86_64)
    options.unwinder == .callFrameInformation ? shared.tableSet(for: ImageMap.current()) : nil
    #else
    nil
    #endif
  }

  /// The ring and the stack walk of a wrapper sampler (allocations, locks),
  /// with `tables` (keep them alive until the sampler's release).
  static func wrapperConfig(_ options: SessionOptions, tables: UnwindTableSet?) -> cap_wrapper_config {
    var config = cap_wrapper_config()
    config.buffer_slots = UInt32(options.bufferSlots)
    config.unwind_images = tables.map { UnsafePointer($0.images.baseAddress) } ?? nil
    config.unwind_image_count = UInt64(tables?.count ?? 0)
    config.async = AsyncRuntime.config(stitch: options.asyncStacks)
    return config
  }
}
