import CAppProfiler
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Owns the C allocation sampler (alloc_linux.c): installs it for a window
/// (an alloc session) or for the life of the process (continuous mode),
/// drains its ring on a thread of its own and keeps what it drained.
///
/// - Window without continuous mode: the wrappers are installed at the
///   session's rate at start and removed at stop; samples are kept per thread
///   with their timestamps.
/// - Continuous mode: the wrappers stay installed; every sample is added to
///   one running total per stack (memory bounded by distinct stacks, not by
///   time). A window opened meanwhile keeps its own samples of that sampler,
///   at the continuous rate (what Go's `/debug/pprof/allocs?seconds=N` sees).
final class AllocationRecorder: Sendable {
  static let shared = AllocationRecorder()

  /// What a finished window or a snapshot hands to the profile builder.
  struct Recording {
    var collector: SampleCollector
    var stats: cap_alloc_stats
    var rate: Int
    var startTimeNanoseconds: UInt64
    var startMonotonicNanoseconds: UInt64
    var cumulative: Bool
    /// The wrappers walked stacks with `.eh_frame` tables (else frame pointers).
    var callFrameInformation: Bool
    /// The live-heap set when the recording was taken.
    var heap = cap_heap_stats()
  }

  private struct State: @unchecked Sendable {
    var installedRate = 0
    var generation: UInt64 = 0
    var tables: UnwindTableSet?
    var buffer: UnsafeMutableRawBufferPointer?
    /// Continuous mode: the running totals and when they started.
    var continuous: SampleCollector?
    var continuousStart: (realtime: UInt64, monotonic: UInt64) = (0, 0)
    /// The open window's own samples (in continuous mode too).
    var window: SampleCollector?
    var windowOpen = false
    var lastImageCheck: UInt64 = 0
    var lastLivePrune: UInt64 = 0
    var liveBuffer: [UInt64] = []
  }

  private let state = Mutex(State())

  private init() {}

  var continuousRate: Int? { state.withLock { $0.continuous != nil ? $0.installedRate : nil } }

  // MARK: Windows (alloc sessions)

  /// Opens a window. With continuous mode on, `rate` is ignored: the window
  /// collects the continuous sampler's samples from now on.
  func beginWindow(rate: Int, options: SessionOptions) throws {
    try state.withLock { state in
      guard !state.windowOpen else { throw ProfilerError.busy }
      if state.continuous == nil {
        state.window = SampleCollector(allocationRate: Double(rate))
        try installLocked(&state, rate: rate, options: options)
      } else {
        drainLocked(&state, fullScan: false)
        state.window = SampleCollector(allocationRate: Double(state.installedRate))
      }
      state.windowOpen = true
    }
  }

  /// Where a consumer of the open window starts reading (after a drain).
  func windowMark() -> SampleCollector.Mark {
    state.withLock { state in
      drainLocked(&state, fullScan: false)
      var stats = cap_alloc_stats()
      cap_alloc_stats_get(&stats)
      return (state.window ?? SampleCollector()).mark(
        counters: SamplerCounters(
          recorded: Int64(stats.samples_written), dropped: Int64(stats.samples_dropped),
          complete: Int64(stats.complete_samples)))
    }
  }

  /// What the open window holds now (after a drain), and trims what no
  /// mark in `keeping` reads any more; the window stays open.
  func windowSnapshot(
    startTimeNanoseconds: UInt64, startMonotonicNanoseconds: UInt64, keeping marks: [SampleCollector.Mark]
  ) -> Recording {
    state.withLock { state in
      drainLocked(&state, fullScan: false)
      var stats = cap_alloc_stats()
      cap_alloc_stats_get(&stats)
      var collector = state.window ?? SampleCollector()
      state.window?.trim(keeping: marks)
      collector.applyLive(liveLocked(&state).ids)
      return Recording(
        collector: collector, stats: stats, rate: state.installedRate, startTimeNanoseconds: startTimeNanoseconds,
        startMonotonicNanoseconds: startMonotonicNanoseconds, cumulative: false,
        callFrameInformation: state.tables != nil, heap: Self.heapStats())
    }
  }

  /// Closes the window and returns everything it holds (continuous mode
  /// goes on).
  func endWindow(startTimeNanoseconds: UInt64, startMonotonicNanoseconds: UInt64) -> Recording {
    state.withLock { state in
      state.windowOpen = false
      if state.continuous != nil {
        drainLocked(&state, fullScan: false)
        var stats = cap_alloc_stats()
        cap_alloc_stats_get(&stats)
        var window = state.window ?? SampleCollector()
        state.window = nil
        window.applyLive(liveLocked(&state).ids)
        return Recording(
          collector: window, stats: stats, rate: state.installedRate,
          startTimeNanoseconds: startTimeNanoseconds, startMonotonicNanoseconds: startMonotonicNanoseconds,
          cumulative: false, callFrameInformation: state.tables != nil, heap: Self.heapStats())
      }
      let rate = state.installedRate
      let callFrameInformation = state.tables != nil
      let (stats, live, heap) = uninstallLocked(&state)
      var collector = state.window ?? SampleCollector()
      state.window = nil
      collector.applyLive(live)
      return Recording(
        collector: collector, stats: stats, rate: rate, startTimeNanoseconds: startTimeNanoseconds,
        startMonotonicNanoseconds: startMonotonicNanoseconds, cumulative: false,
        callFrameInformation: callFrameInformation, heap: heap)
    }
  }

  /// Closes the window and drops its samples.
  func cancelWindow() {
    state.withLock { state in
      guard state.windowOpen else { return }
      state.windowOpen = false
      state.window = nil
      if state.continuous == nil { _ = uninstallLocked(&state) }
    }
  }

  // MARK: Continuous mode

  func enableContinuous(rate: Int, options: SessionOptions) throws {
    try state.withLock { state in
      guard state.continuous == nil else { return }
      guard !state.windowOpen else { throw ProfilerError.busy }
      state.continuous = SampleCollector(
        allocationRate: Double(rate), totals: RunningTotals(thread: getpid(), name: "all threads"))
      state.continuousStart = (ProfilingSession.clock(CLOCK_REALTIME), ProfilingSession.clock(CLOCK_MONOTONIC))
      do {
        try installLocked(&state, rate: rate, options: options)
      } catch {
        state.continuous = nil
        throw error
      }
    }
  }

  func disableContinuous() {
    state.withLock { state in
      guard state.continuous != nil else { return }
      if state.windowOpen {
        // The open window loses its sampler; it ends with what it has.
        state.windowOpen = false
        state.window = nil
      }
      _ = uninstallLocked(&state)
      state.continuous = nil
      state.liveBuffer = []
    }
  }

  /// The running totals since continuous mode was enabled; nil when it is off.
  func continuousSnapshot() -> Recording? {
    state.withLock { state in
      guard state.continuous != nil else { return nil }
      drainLocked(&state, fullScan: false)
      var stats = cap_alloc_stats()
      cap_alloc_stats_get(&stats)
      let live = liveLocked(&state)
      state.continuous!.pruneLive(keeping: live.ids, before: live.boundary)
      var collector = state.continuous!
      collector.applyLive(live.ids)
      return Recording(
        collector: collector, stats: stats, rate: state.installedRate,
        startTimeNanoseconds: state.continuousStart.realtime,
        startMonotonicNanoseconds: state.continuousStart.monotonic, cumulative: true,
        callFrameInformation: state.tables != nil, heap: Self.heapStats())
    }
  }

  // MARK: Installing and draining (with the state locked)

  private func installLocked(_ state: inout State, rate: Int, options: SessionOptions) throws {
    let tables = UnwindTables.forSession(options)
    var config = cap_alloc_config(mean_bytes: UInt64(rate), wrapper: UnwindTables.wrapperConfig(
        options, tables: tables, sparse: rate >= SessionOptions().allocationSamplingRate))
    try ProfilerError.check(operation: "installing the allocation sampler") { cap_alloc_start(&config, $0, $1) }
    state.tables = tables
    state.installedRate = rate
    state.generation &+= 1
    if state.buffer == nil {
      state.buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
    }
    startDrainThread(generation: state.generation)
  }

  /// Stops the wrappers; returns their counters and what was still alive
  /// at that moment (the live-heap set is emptied by the release).
  private func uninstallLocked(_ state: inout State) -> (cap_alloc_stats, Set<UInt64>, cap_heap_stats) {
    cap_alloc_stop()
    drainLocked(&state, fullScan: true)
    var stats = cap_alloc_stats()
    cap_alloc_stats_get(&stats)
    let live = liveLocked(&state).ids
    let heap = Self.heapStats()
    cap_alloc_release()
    state.installedRate = 0
    state.generation &+= 1  // the drain thread ends at its next wake-up
    state.tables = nil
    return (stats, live, heap)
  }

  /// The heap ids of the tracked allocations alive now, and the first id
  /// not yet handed out (call after a drain: a drained sample absent from
  /// the ids was freed).
  private func liveLocked(_ state: inout State) -> (ids: Set<UInt64>, boundary: UInt64) {
    // The set and buffer built here are the profiler's, not the app's.
    let wasIgnored = cap_alloc_set_thread_ignored(1)
    defer { _ = cap_alloc_set_thread_ignored(wasIgnored) }
    var heap = cap_heap_stats()
    cap_heap_stats_get(&heap)
    let capacity = Int(heap.capacity)
    if state.liveBuffer.count < capacity { state.liveBuffer = [UInt64](repeating: 0, count: capacity) }
    var boundary: UInt64 = 0
    let count = state.liveBuffer.withUnsafeMutableBufferPointer { buffer in
      cap_heap_live_ids(buffer.baseAddress, buffer.count, &boundary)
    }
    return (Set(state.liveBuffer[0..<count]), boundary)
  }

  static func heapStats() -> cap_heap_stats {
    var heap = cap_heap_stats()
    cap_heap_stats_get(&heap)
    return heap
  }

  private func drainLocked(_ state: inout State, fullScan: Bool) {
    guard let buffer = state.buffer, state.installedRate > 0 else { return }
    let wasIgnored = cap_alloc_set_thread_ignored(1)
    defer { _ = cap_alloc_set_thread_ignored(wasIgnored) }
    ImageHistory.shared.refresh()
    while true {
      let bytes = cap_alloc_drain(buffer.baseAddress, buffer.count, fullScan ? 1 : 0)
      if bytes == 0 { break }
      let chunk = UnsafeRawBufferPointer(rebasing: buffer[0..<bytes])
      // Both: the running totals, and an open window's own samples (a
      // window needs each sample — its labels, its scope — which the
      // totals fold away).
      state.continuous?.ingest(chunk)
      state.window?.ingest(chunk)
      if bytes < buffer.count / 2 { break }
    }
  }

  /// Every 20 ms: drain; in continuous mode, once a second, redirect the
  /// entries of images loaded since (dlopen).
  private func drainTick(generation: UInt64) -> Bool {
    state.withLock { state in
      guard state.generation == generation, state.installedRate > 0 else { return false }
      drainLocked(&state, fullScan: false)
      // Retired slots piling up, or the live entries outgrowing the table.
      _ = cap_heap_maintain()
      if state.continuous != nil {
        let now = ProfilingSession.clock(CLOCK_MONOTONIC)
        if now - state.lastImageCheck > 1_000_000_000 {
          state.lastImageCheck = now
          _ = cap_alloc_patch_new_images()
        }
        if now - state.lastLivePrune > 1_000_000_000 {
          // The running totals' live records: only those still in the set.
          state.lastLivePrune = now
          let live = liveLocked(&state)
          state.continuous!.pruneLive(keeping: live.ids, before: live.boundary)
        }
      }
      return true
    }
  }

  private func startDrainThread(generation: UInt64) {
    ProfilerThread.repeating(name: "app-prof-alloc", every: 20_000_000) { [self] in drainTick(generation: generation) }
  }
}
