import CAppProfiler
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The compiled unwind rows of one image in the handler's compact form —
/// per row a 32-bit pc offset and a 16-bit index into the image's distinct
/// rules, 6 bytes instead of the parser's 16 — in memory of its own that
/// does not move (the signal handler holds raw pointers to it during a
/// session) and goes back to the system when the table is dropped.
final class UnwindTable: @unchecked Sendable {
  let start: UInt64
  let end: UInt64
  let count: Int
  let ruleCount: Int
  private let memory: UnsafeMutableRawPointer
  private let bytes: Int

  /// nil when the rows cannot take the compact form: an image spanning
  /// 4 GiB or more, or more than 65,536 distinct rules (none seen; such an
  /// image is walked with frame pointers, as one without `.eh_frame`).
  init?(rows parsed: [cap_unwind_row]) {
    guard let first = parsed.first, let last = parsed.last, last.pc &- first.pc < 1 << 32 else { return nil }
    // Rows that repeat the rule before them change no lookup.
    var pcs: [UInt32] = []
    var ruleIndices: [UInt16] = []
    var rules: [cap_unwind_rule] = []
    var indexOfRule: [UInt64: UInt16] = [:]
    pcs.reserveCapacity(parsed.count)
    ruleIndices.reserveCapacity(parsed.count)
    var previous: UInt64? = nil
    for row in parsed {
      let rule = cap_unwind_rule(cfa_offset: row.cfa_offset, fp_offset: row.fp_offset, kind: row.kind, r14_slot: row.r14_slot)
      let key = Self.key(rule)
      if key == previous { continue }
      previous = key
      let index: UInt16
      if let known = indexOfRule[key] {
        index = known
      } else {
        guard rules.count <= Int(UInt16.max) else { return nil }
        index = UInt16(rules.count)
        indexOfRule[key] = index
        rules.append(rule)
      }
      pcs.append(UInt32(row.pc &- first.pc))
      ruleIndices.append(index)
    }
    let ruleOffset = (pcs.count * 6 + 7) & ~7
    let bytes = max(ruleOffset + rules.count * MemoryLayout<cap_unwind_rule>.stride, 1)
    guard let mapped = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
      mapped != MAP_FAILED
    else { return nil }
    pcs.withUnsafeBytes { mapped.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
    ruleIndices.withUnsafeBytes { (mapped + pcs.count * 4).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
    rules.withUnsafeBytes { (mapped + ruleOffset).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
    memory = mapped
    self.bytes = bytes
    start = first.pc
    end = last.pc &+ 1
    count = pcs.count
    ruleCount = rules.count
  }

  deinit {
    munmap(memory, bytes)
  }

  var byteCount: Int { bytes }

  /// The handler's view; valid while this table lives.
  var image: cap_unwind_image {
    let ruleOffset = (count * 6 + 7) & ~7
    return cap_unwind_image(
      start: start, end: end,
      row_pcs: UnsafePointer(memory.assumingMemoryBound(to: UInt32.self)),
      row_rules: UnsafePointer((memory + count * 4).assumingMemoryBound(to: UInt16.self)),
      count: UInt64(count),
      rules: UnsafePointer((memory + ruleOffset).assumingMemoryBound(to: cap_unwind_rule.self)),
      rule_count: UInt64(ruleCount))
  }

  private static func key(_ rule: cap_unwind_rule) -> UInt64 {
    UInt64(UInt32(bitPattern: rule.cfa_offset)) | UInt64(UInt16(bitPattern: rule.fp_offset)) << 32
      | UInt64(rule.kind) << 48 | UInt64(UInt8(bitPattern: rule.r14_slot)) << 56
  }

  /// Reads `.eh_frame` of a loaded image through its `.eh_frame_hdr`:
  ///   version u8, eh_frame_ptr encoding u8, fde_count encoding u8,
  ///   table encoding u8, eh_frame_ptr (encoded, usually pc-relative sdata4)
  static func build(for image: LoadedImage) -> UnwindTable? {
    let rows = parse(image)
    return rows.isEmpty ? nil : UnwindTable(rows: rows)
  }

  /// The parser's rows of `image` (empty without a readable `.eh_frame`).
  static func parse(_ image: LoadedImage) -> [cap_unwind_row] {
    guard image.ehFrameHeader != 0,
      let header = UnsafeRawPointer(bitPattern: UInt(image.ehFrameHeader)),
      header.load(as: UInt8.self) == 1
    else { return [] }
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
      return []
    }
    // Never read past the loaded segment that holds .eh_frame.
    guard let segment = image.loadSegments.first(where: { $0.contains(ehFrame) }),
      let start = UnsafeRawPointer(bitPattern: UInt(ehFrame))
    else { return [] }
    let memory = UnsafeRawBufferPointer(start: start, count: Int(segment.upperBound - ehFrame))
    return EHFrameParser(memory: memory, runtimeAddress: ehFrame).compile()
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
  /// Called once the set is released (the cache's count of sets in use).
  private let onRelease: (@Sendable () -> Void)?

  init(tables: [UnwindTable], built: Int, buildNanoseconds: UInt64, onRelease: (@Sendable () -> Void)? = nil) {
    self.onRelease = onRelease
    let sorted = tables.sorted { $0.start < $1.start }
    // Overlapping ranges (should not happen) keep the first.
    var kept: [UnwindTable] = []
    for table in sorted where kept.last.map({ $0.end <= table.start }) ?? true { kept.append(table) }
    self.tables = kept
    images = .allocate(capacity: max(kept.count, 1))
    for (index, table) in kept.enumerated() {
      images[index] = table.image
    }
    self.built = built
    self.buildNanoseconds = buildNanoseconds
    totalBytes = kept.reduce(0) { $0 + $1.byteCount }
  }

  deinit {
    images.deallocate()
    onRelease?()
  }

  var count: Int { tables.count }
  var rowCount: Int { tables.reduce(0) { $0 + $1.count } }
}

/// Tables per image, built once and kept across sessions; images loaded
/// since the last session get theirs before the next one starts. They are
/// the largest thing a profile leaves behind (~10 MB for a NIO service), so
/// once no session has used them for ``keptIdle`` they are dropped, with
/// the symbolizer's symbol and DWARF tables (the names it resolved stay),
/// and the memory is returned; the next session builds them again before
/// its duration starts.
final class UnwindTables: Sendable {
  static let shared = UnwindTables()

  /// How long tables outlive the last session that used them: long enough
  /// for back-to-back profiles and scrapes to share them.
  static let keptIdle: UInt64 = 5_000_000_000

  private struct State {
    var cache: [String: UnwindTable?] = [:]
    /// Table sets alive (running sessions).
    var inUse = 0
    /// When the last set was released (monotonic ns); nil while one is in use.
    var idleSince: UInt64? = nil
    var reaperRunning = false
  }

  private let state = Mutex(State())

  func tableSet(for imageMap: ImageMap) -> UnwindTableSet {
    let started = ProfilingSession.clock(CLOCK_MONOTONIC)
    return state.withLock { state in
      state.inUse += 1
      state.idleSince = nil
      var built = 0
      var tables: [UnwindTable] = []
      var current: Set<String> = []
      for image in imageMap.images {
        current.insert(image.key)
        if let cached = state.cache[image.key] {
          if let cached { tables.append(cached) }
          continue
        }
        // Reads the image's .eh_frame in memory: pinned, so a dlclose on
        // another thread cannot unmap it under the parser.
        guard let table = image.whileLoaded({ UnwindTable.build(for: image) }) else { continue }
        state.cache[image.key] = table
        built += 1
        FreedMemory.noteTransientWork()
        if let table { tables.append(table) }
      }
      // Images that were unloaded: drop their tables (a running session
      // keeps its own references).
      for key in state.cache.keys where !current.contains(key) { state.cache[key] = nil }
      return UnwindTableSet(
        tables: tables, built: built, buildNanoseconds: ProfilingSession.clock(CLOCK_MONOTONIC) - started,
        onRelease: { [self] in released() })
    }
  }

  /// A set was released: once none is in use for ``keptIdle``, a thread of
  /// ours drops the tables (checking every second, then ending).
  private func released() {
    let startReaper = state.withLock { state -> Bool in
      state.inUse -= 1
      guard state.inUse == 0 else { return false }
      state.idleSince = ProfilingSession.clock(CLOCK_MONOTONIC)
      guard !state.reaperRunning else { return false }
      state.reaperRunning = true
      return true
    }
    guard startReaper else { return }
    ProfilerThread.repeating(name: "app-prof-unwind", every: 1_000_000_000) { [self] in
      enum Step { case wait, end, dropped }
      let step = state.withLock { state -> Step in
        guard let since = state.idleSince, state.inUse == 0 else {
          state.reaperRunning = false
          return .end
        }
        guard ProfilingSession.clock(CLOCK_MONOTONIC) &- since >= Self.keptIdle else { return .wait }
        state.reaperRunning = false
        if state.cache.isEmpty { return .end }
        state.cache.removeAll()
        return .dropped
      }
      switch step {
      case .wait: return true
      case .end: return false
      case .dropped:
        // The symbolizer's tables too: the names it resolved stay.
        Symbolizer.shared.releaseTables()
        FreedMemory.noteTransientWork()
        FreedMemory.release()
        return false
      }
    }
  }

  func reset() {
    state.withLock { $0.cache.removeAll() }
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
