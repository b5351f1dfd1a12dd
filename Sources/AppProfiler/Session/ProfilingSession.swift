import AppProfilerFormats
import CAppProfiler
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A running profiling session. Get one from ``Profiler/start(mode:interval:options:)``
/// and end it with ``stop()`` (keeps the samples) or ``cancel()`` (drops them).
/// Dropping the last reference without either stops it too.
public final class ProfilingSession: Sendable {
  public let mode: Profile.Mode
  public let interval: Duration

  private let profiler: Profiler
  private let id: UInt64
  private let startTimeNanoseconds: UInt64
  private let startMonotonicNanoseconds: UInt64
  private let drain: SessionDrain
  /// Moves samples out of the C buffer every 10 ms: a thread of its own, so
  /// a session runs and ends while the app's cooperative pool is blocked.
  private let drainThread: DrainThread?
  private let ended = Atomic<Bool>(false)
  /// Unwind tables the handler reads; alive until the session is released.
  private let unwindTables: UnwindTableSet?
  private let symbolicationBudget: Duration?
  private let recordsKernelState: Bool

  init(profiler: Profiler, id: UInt64, mode: Profile.Mode, interval: Duration, options: SessionOptions) throws {
    self.profiler = profiler
    self.id = id
    self.mode = mode
    self.interval = interval
    self.startTimeNanoseconds = Self.clock(CLOCK_REALTIME)
    self.startMonotonicNanoseconds = Self.clock(CLOCK_MONOTONIC)
    self.symbolicationBudget = options.symbolicationBudget
    self.recordsKernelState = options.recordsKernelState

    if mode == .alloc {
      // Allocation sampling: the wrappers of AllocationRecorder, no signals.
      try AllocationRecorder.shared.beginWindow(rate: options.allocationSamplingRate, options: options)
      self.unwindTables = nil
      self.drain = SessionDrain()
      self.drainThread = nil
      return
    }

    var config = cap_config()
    config.mode = mode == .wall ? Int32(CAP_MODE_WALL) : Int32(CAP_MODE_CPU)
    switch options.cpuEngine {
    case .automatic: config.engine = Int32(CAP_ENGINE_AUTO)
    case .perfEvents: config.engine = Int32(CAP_ENGINE_PERF_EVENT)
    case .posixTimers: config.engine = Int32(CAP_ENGINE_POSIX_TIMER)
    }
    config.signal_number = options.signal
    config.buffer_slots = UInt32(options.bufferSlots)
    config.interval_ns = interval.nanoseconds
    config.max_threads = UInt32(options.maxThreads)
    config.exclude_kernel = options.includeKernelTime ? 0 : 1
    #if arch(x86_64)
    let tables = options.unwinder == .callFrameInformation ? UnwindTables.shared.tableSet(for: ImageMap.current()) : nil
    #else
    let tables: UnwindTableSet? = nil
    #endif
    self.unwindTables = tables
    config.unwind_images = tables.map { UnsafePointer($0.images.baseAddress) } ?? nil
    config.unwind_image_count = UInt64(tables?.count ?? 0)
    var message = [CChar](repeating: 0, count: 256)
    let result = cap_session_start(&config, &message, message.count)
    if result != 0 {
      if result == -EBUSY { throw ProfilerError.busy }
      throw ProfilerError.system(
        operation: "starting the \(mode.rawValue) session", errno: -result,
        message: String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
    }
    self.drain = SessionDrain()
    // Positional drains only: a full scan reads every slot of the ring (page
    // faults and cache misses while the app runs); stragglers are picked up
    // by the one full scan after stop.
    self.drainThread = DrainThread(drain: drain)
  }

  deinit {
    if !ended.load(ordering: .acquiring) && mode == .alloc {
      AllocationRecorder.shared.cancelWindow()
      profiler.machine.withLock { $0.finished(id) }
    } else if !ended.load(ordering: .acquiring) {
      drainThread?.stop()
      drain.close { cap_session_release() }
      profiler.machine.withLock { $0.finished(id) }
    }
  }

  /// Stops sampling and returns the profile (symbolized).
  /// - Throws: ``ProfilerError/unsupported(_:)`` when the session was already stopped.
  public func stop() async throws -> Profile {
    try stopSynchronously()
  }

  /// ``stop()`` on the calling thread, without Swift concurrency: for
  /// callers that must work while the app's cooperative pool is blocked
  /// (the profile server). Symbolication runs on the profiler's own thread.
  public func stopSynchronously() throws -> Profile {
    guard profiler.machine.withLock({ $0.stop(id) }) else {
      throw ProfilerError.unsupported("this session has already been stopped")
    }
    defer {
      ended.store(true, ordering: .releasing)
      profiler.machine.withLock { $0.finished(id) }
    }
    if mode == .alloc {
      let recording = AllocationRecorder.shared.endWindow(
        startTimeNanoseconds: startTimeNanoseconds, startMonotonicNanoseconds: startMonotonicNanoseconds)
      let end = Self.clock(CLOCK_MONOTONIC)
      return Self.allocationProfile(recording, durationNanoseconds: end - startMonotonicNanoseconds, symbolicationBudget: symbolicationBudget)
    }
    var collector = finishSampling()
    var stats = cap_stats()
    cap_session_stats(&stats)
    drain.close { cap_session_release() }
    let end = Self.clock(CLOCK_MONOTONIC)
    var builder = ProfileBuilder(
      mode: mode, intervalNanoseconds: interval.nanoseconds, startTimeNanoseconds: startTimeNanoseconds,
      startMonotonicNanoseconds: startMonotonicNanoseconds,
      durationNanoseconds: end - startMonotonicNanoseconds, stats: stats)
    builder.symbolicationBudget = symbolicationBudget
    builder.recordsKernelState = recordsKernelState
    var profile = builder.build(from: &collector)
    if let tables = unwindTables {
      profile.metadata["unwinder"] = "cfi"
      profile.metadata["unwind_images"] = String(tables.count)
      profile.metadata["unwind_rows"] = String(tables.rowCount)
      profile.metadata["unwind_table_bytes"] = String(tables.totalBytes)
      profile.metadata["unwind_tables_built"] = String(tables.built)
      profile.metadata["unwind_table_build_ms"] = String(Double(tables.buildNanoseconds) / 1e6)
    } else {
      profile.metadata["unwinder"] = "frame-pointers"
    }
    return profile
  }

  /// Stops sampling and discards the samples. Safe to call more than once.
  public func cancel() {
    guard profiler.machine.withLock({ $0.stop(id) }) else { return }
    if mode == .alloc {
      AllocationRecorder.shared.cancelWindow()
      ended.store(true, ordering: .releasing)
      profiler.machine.withLock { $0.finished(id) }
      return
    }
    drainThread?.stop()
    // The drain thread may be in a drain right now: release under its lock,
    // so the buffer is never unmapped under a reader (found by TSan).
    drain.close { cap_session_release() }
    ended.store(true, ordering: .releasing)
    profiler.machine.withLock { $0.finished(id) }
  }

  /// Symbolizes an allocation recording (a window or the continuous totals).
  static func allocationProfile(
    _ recording: AllocationRecorder.Recording, durationNanoseconds: UInt64,
    symbolicationBudget: Duration? = SessionOptions().symbolicationBudget
  ) -> Profile {
    var collector = recording.collector
    var stats = cap_stats()
    stats.samples_written = recording.stats.samples_written
    stats.samples_dropped = recording.stats.samples_dropped
    stats.complete_samples = recording.stats.complete_samples
    var builder = ProfileBuilder(
      mode: .alloc, intervalNanoseconds: UInt64(recording.rate), startTimeNanoseconds: recording.startTimeNanoseconds,
      startMonotonicNanoseconds: recording.startMonotonicNanoseconds, durationNanoseconds: durationNanoseconds,
      stats: stats, allocationStats: recording.stats)
    builder.symbolicationBudget = symbolicationBudget
    var profile = builder.build(from: &collector)
    profile.metadata["alloc_cumulative"] = recording.cumulative ? "true" : "false"
    profile.metadata["unwinder"] = recording.callFrameInformation ? "cfi" : "frame-pointers"
    return profile
  }

  private func finishSampling() -> SampleCollector {
    drainThread?.stop()
    cap_session_stop()
    drain.drainAvailable(fullScan: true)
    return drain.takeCollector()
  }

  static func clock(_ id: clockid_t) -> UInt64 {
    var ts = timespec()
    clock_gettime(id, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
  }
}

/// The thread that drains a session every 10 ms until ``stop()``, which
/// returns once the thread has finished its last drain.
final class DrainThread: Sendable {
  private final class Flag: Sendable {
    let stopping = Atomic<Bool>(false)
  }
  private let flag = Flag()
  private let thread: ProfilerThread

  init(drain: SessionDrain) {
    let flag = self.flag
    self.thread = ProfilerThread(name: "app-prof-drain") {
      while !flag.stopping.load(ordering: .acquiring) {
        usleep(10_000)
        drain.drainAvailable(fullScan: false)
      }
    }
  }

  /// Asks the thread to end and waits for it (at most one drain interval).
  /// Safe to call more than once.
  func stop() {
    flag.stopping.store(true, ordering: .releasing)
    thread.join()
  }
}

/// Moves samples out of the C buffer into a collector, one drain at a time.
final class SessionDrain: Sendable {
  private struct State: @unchecked Sendable {
    var collector = SampleCollector()
    var buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
    /// Set once the C session is released: drains become no-ops.
    var closed = false
  }
  private let state = Mutex(State())

  deinit {
    state.withLock { $0.buffer.deallocate() }
  }

  func drainAvailable(fullScan: Bool) {
    ImageHistory.shared.refresh()
    state.withLock { state in
      guard !state.closed else { return }
      while true {
        let bytes = cap_session_drain(state.buffer.baseAddress, state.buffer.count, fullScan ? 1 : 0)
        if bytes == 0 { break }
        state.collector.ingest(UnsafeRawBufferPointer(rebasing: state.buffer[0..<bytes]))
        if bytes < state.buffer.count / 2 { break }
      }
    }
  }

  /// Runs `release` (which frees the C session's buffer) with no drain in
  /// progress, and makes every later drain a no-op.
  func close(_ release: () -> Void) {
    state.withLock { state in
      guard !state.closed else { return }
      state.closed = true
      release()
    }
  }

  func takeCollector() -> SampleCollector {
    state.withLock { state in
      let collector = state.collector
      state.collector = SampleCollector()
      return collector
    }
  }
}
