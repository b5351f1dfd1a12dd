import CAppProfiler
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

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
    let set = state.withLock { state in
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
    // The parser's rows were transient: an always-on sampler (heap, flight
    // recorder) builds no profile that would return them later.
    if set.built > 0 { FreedMemory.release() }
    return set
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
  /// `sparse`: samples are rare at this rate (the default allocation or
  /// lock rate or coarser), so the ring starts with 256 slots in use and
  /// grows only if bursts need it; an always-on sampler then keeps 0.5 MiB
  /// resident instead of all its slots. At finer rates it starts with all.
  static func wrapperConfig(_ options: SessionOptions, tables: UnwindTableSet?, sparse: Bool) -> cap_wrapper_config {
    var config = cap_wrapper_config()
    config.buffer_slots = UInt32(options.bufferSlots)
    config.initial_slots = sparse ? UInt32(min(256, options.bufferSlots)) : 0
    config.unwind_images = tables.map { UnsafePointer($0.images.baseAddress) } ?? nil
    config.unwind_image_count = UInt64(tables?.count ?? 0)
    config.async = AsyncRuntime.config(stitch: options.asyncStacks)
    return config
  }
}
