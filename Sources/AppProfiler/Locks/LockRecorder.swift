import CAppProfiler
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Owns the C lock sampler (lock_linux.c): installs it while a block or
/// mutex window is open or for the life of the process (continuous mode),
/// drains its ring on a thread of its own and keeps what it drained, one
/// collector per kind (the waiters' stacks for block, the holders' for
/// mutex). docs/locks.md says what is measured.
final class LockRecorder: Sendable {
  static let shared = LockRecorder()

  /// Go's two lock profiles, from the same records.
  enum Kind: Int, CaseIterable {
    case block, mutex

    init?(_ mode: Profile.Mode) {
      switch mode {
      case .block: self = .block
      case .mutex: self = .mutex
      default: return nil
      }
    }

    var mode: Profile.Mode { self == .block ? .block : .mutex }
    var flag: UInt16 { UInt16(self == .block ? CAP_SAMPLE_LOCK_WAIT : CAP_SAMPLE_LOCK_HOLD) }
  }

  /// What a finished window or a snapshot hands to the profile builder.
  struct Recording {
    var collector: SampleCollector
    var stats: cap_lock_stats
    var rateNanoseconds: Int
    var startTimeNanoseconds: UInt64
    var startMonotonicNanoseconds: UInt64
    var cumulative: Bool
    var callFrameInformation: Bool
  }

  private struct State: @unchecked Sendable {
    var installedRate = 0
    var generation: UInt64 = 0
    var tables: UnwindTableSet?
    var buffer: UnsafeMutableRawBufferPointer?
    /// Continuous mode: running totals per kind, and when they started.
    var continuous: [SampleCollector]?
    var continuousStart: (realtime: UInt64, monotonic: UInt64) = (0, 0)
    /// Open windows, per kind.
    var windows: [SampleCollector?] = [nil, nil]
    var lastImageCheck: UInt64 = 0

    var isInUse: Bool { continuous != nil || windows.contains { $0 != nil } }
  }

  private let state = Mutex(State())

  private init() {}

  var continuousRate: Duration? {
    state.withLock { $0.continuous != nil ? .nanoseconds($0.installedRate) : nil }
  }

  // MARK: Windows (block and mutex sessions)

  /// Opens a window of `kind`. While the sampler already runs (the other
  /// kind's window, continuous mode), the window reads it at its rate.
  func beginWindow(_ kind: Kind, rate: Duration, options: SessionOptions) throws {
    try state.withLock { state in
      guard state.windows[kind.rawValue] == nil else { throw ProfilerError.busy }
      if state.installedRate == 0 {
        try installLocked(&state, rate: Int(rate.nanoseconds), options: options)
      } else {
        drainLocked(&state, fullScan: false)
      }
      state.windows[kind.rawValue] = SampleCollector(lockKind: kind.flag, lockRate: Double(state.installedRate))
    }
  }

  func windowMark(_ kind: Kind) -> SampleCollector.Mark {
    state.withLock { state in
      drainLocked(&state, fullScan: false)
      let stats = Self.stats()
      return (state.windows[kind.rawValue] ?? SampleCollector()).mark(
        counters: SamplerCounters(
          recorded: Int64(stats.samples_written), dropped: Int64(stats.samples_dropped),
          complete: Int64(stats.complete_samples)))
    }
  }

  func windowSnapshot(
    _ kind: Kind, start: (realtime: UInt64, monotonic: UInt64), keeping marks: [SampleCollector.Mark]
  ) -> Recording {
    state.withLock { state in
      drainLocked(&state, fullScan: false)
      let collector = state.windows[kind.rawValue] ?? SampleCollector()
      state.windows[kind.rawValue]?.trim(keeping: marks)
      return recording(state, collector, start: start, cumulative: false)
    }
  }

  /// Closes the window; the sampler stops when nothing else reads it.
  func endWindow(_ kind: Kind, start: (realtime: UInt64, monotonic: UInt64)) -> Recording {
    state.withLock { state in
      let last = state.continuous == nil && state.windows.indices.allSatisfy { $0 == kind.rawValue || state.windows[$0] == nil }
      if last { cap_lock_stop() }
      drainLocked(&state, fullScan: last)
      let result = recording(state, state.windows[kind.rawValue] ?? SampleCollector(), start: start, cumulative: false)
      state.windows[kind.rawValue] = nil
      if last { uninstallLocked(&state) }
      return result
    }
  }

  func cancelWindow(_ kind: Kind) {
    state.withLock { state in
      guard state.windows[kind.rawValue] != nil else { return }
      state.windows[kind.rawValue] = nil
      if !state.isInUse { uninstallLocked(&state) }
    }
  }

  // MARK: Continuous mode

  func enableContinuous(rate: Duration, options: SessionOptions) throws {
    try state.withLock { state in
      guard state.continuous == nil else { return }
      guard state.installedRate == 0 else { throw ProfilerError.busy }
      try installLocked(&state, rate: Int(rate.nanoseconds), options: options)
      state.continuous = Kind.allCases.map { kind in
        SampleCollector(
          lockKind: kind.flag, lockRate: Double(state.installedRate),
          totals: RunningTotals(thread: getpid(), name: "all threads"))
      }
      state.continuousStart = (ProfilingSession.clock(CLOCK_REALTIME), ProfilingSession.clock(CLOCK_MONOTONIC))
    }
  }

  func disableContinuous() {
    state.withLock { state in
      guard state.continuous != nil else { return }
      state.continuous = nil
      // Open windows lose their sampler; they end with what they have.
      state.windows = [nil, nil]
      uninstallLocked(&state)
    }
  }

  /// The running totals of `kind` since continuous mode was enabled; nil when it is off.
  func continuousSnapshot(_ kind: Kind) -> Recording? {
    state.withLock { state in
      guard state.continuous != nil else { return nil }
      drainLocked(&state, fullScan: false)
      return recording(state, state.continuous![kind.rawValue], start: state.continuousStart, cumulative: true)
    }
  }

  // MARK: Installing and draining (with the state locked)

  private func recording(
    _ state: State, _ collector: SampleCollector, start: (realtime: UInt64, monotonic: UInt64), cumulative: Bool
  ) -> Recording {
    Recording(
      collector: collector, stats: Self.stats(), rateNanoseconds: state.installedRate,
      startTimeNanoseconds: start.realtime, startMonotonicNanoseconds: start.monotonic, cumulative: cumulative,
      callFrameInformation: state.tables != nil)
  }

  static func stats() -> cap_lock_stats {
    var stats = cap_lock_stats()
    cap_lock_stats_get(&stats)
    return stats
  }

  private func installLocked(_ state: inout State, rate: Int, options: SessionOptions) throws {
    let tables = UnwindTables.forSession(options)
    var config = cap_lock_config(rate_ns: UInt64(rate), wrapper: UnwindTables.wrapperConfig(
        options, tables: tables, sparse: rate >= SessionOptions().lockSamplingRate.nanoseconds))
    try ProfilerError.check(operation: "installing the lock sampler") { cap_lock_start(&config, $0, $1) }
    state.tables = tables
    state.installedRate = rate
    state.generation &+= 1
    if state.buffer == nil {
      state.buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
    }
    startDrainThread(generation: state.generation)
  }

  private func uninstallLocked(_ state: inout State) {
    cap_lock_stop()
    cap_lock_release()
    state.installedRate = 0
    state.generation &+= 1  // the drain thread ends at its next wake-up
    state.tables = nil
  }

  private func drainLocked(_ state: inout State, fullScan: Bool) {
    guard let buffer = state.buffer, state.installedRate > 0 else { return }
    let wasIgnored = cap_lock_set_thread_ignored(1)
    defer { _ = cap_lock_set_thread_ignored(wasIgnored) }
    ImageHistory.shared.refresh()
    while true {
      let bytes = cap_lock_drain(buffer.baseAddress, buffer.count, fullScan ? 1 : 0)
      if bytes == 0 { break }
      let chunk = UnsafeRawBufferPointer(rebasing: buffer[0..<bytes])
      for index in state.windows.indices { state.windows[index]?.ingest(chunk) }
      if state.continuous != nil {
        for index in state.continuous!.indices { state.continuous![index].ingest(chunk) }
      }
      if bytes < buffer.count / 2 { break }
    }
  }

  /// Every 20 ms: drain; in continuous mode, once a second, redirect the
  /// entries of images loaded since (dlopen).
  private func drainTick(generation: UInt64) -> Bool {
    state.withLock { state in
      guard state.generation == generation, state.installedRate > 0 else { return false }
      drainLocked(&state, fullScan: false)
      let now = ProfilingSession.clock(CLOCK_MONOTONIC)
      if now - state.lastImageCheck > 1_000_000_000 {
        state.lastImageCheck = now
        _ = cap_lock_patch_new_images()
      }
      return true
    }
  }

  private func startDrainThread(generation: UInt64) {
    ProfilerThread.repeating(name: "app-prof-locks", every: 20_000_000) { [self] in drainTick(generation: generation) }
  }
}

/// A block or mutex session's sampler: a window of the lock recorder.
final class LockBackend: SessionBackend {
  let kind: LockRecorder.Kind
  let start: (realtime: UInt64, monotonic: UInt64)

  init(kind: LockRecorder.Kind, options: SessionOptions) throws {
    try LockRecorder.shared.beginWindow(kind, rate: options.lockSamplingRate, options: options)
    self.kind = kind
    self.start = (ProfilingSession.clock(CLOCK_REALTIME), ProfilingSession.clock(CLOCK_MONOTONIC))
  }

  var startTimeNanoseconds: UInt64 { start.realtime }
  var startMonotonicNanoseconds: UInt64 { start.monotonic }

  func mark() -> SampleCollector.Mark { LockRecorder.shared.windowMark(kind) }

  func snapshot(keeping marks: [SampleCollector.Mark]) -> (collector: SampleCollector, report: SessionReport) {
    let recording = LockRecorder.shared.windowSnapshot(kind, start: start, keeping: marks)
    return (recording.collector, Self.report(recording))
  }

  func finish() -> (collector: SampleCollector, report: SessionReport) {
    let recording = LockRecorder.shared.endWindow(kind, start: start)
    return (recording.collector, Self.report(recording))
  }

  func cancel() { LockRecorder.shared.cancelWindow(kind) }

  static func report(_ recording: LockRecorder.Recording) -> SessionReport {
    var report = SessionReport(
      engine: "got_redirect(pthread_mutex_lock, pthread_mutex_timedlock, pthread_rwlock_rdlock, pthread_rwlock_wrlock; "
        + "pthread_mutex_unlock, pthread_rwlock_unlock)")
    report.period = 1
    report.samplesRecorded = Int64(recording.stats.samples_written)
    report.samplesDropped = Int64(recording.stats.samples_dropped)
    report.completeStacks = Int64(recording.stats.complete_samples)
    report.metadata["lock_sample_rate_ns"] = String(recording.rateNanoseconds)
    report.metadata["lock_contentions_seen"] = String(recording.stats.contentions)
    report.metadata["lock_untracked_contentions"] = String(recording.stats.untracked_locks)
    report.metadata["lock_redirected_entries"] = String(recording.stats.patched_slots)
    report.metadata["lock_cumulative"] = recording.cumulative ? "true" : "false"
    report.metadata["async_stitched_samples"] = String(recording.stats.async_stitched)
    report.metadata["async_broken_chains"] = String(recording.stats.async_broken)
    report.metadata["unwinder"] = recording.callFrameInformation ? "cfi" : "frame-pointers"
    return report
  }
}
