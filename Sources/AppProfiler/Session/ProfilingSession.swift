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
  /// The sampler: signals (cpu, wall) or the allocation wrappers.
  private let backend: any SessionBackend
  private let ended = Atomic<Bool>(false)
  private let symbolicationBudget: Duration?
  private let recordsKernelState: Bool
  private let includeProfilerThreads: Bool

  init(profiler: Profiler, id: UInt64, mode: Profile.Mode, interval: Duration, options: SessionOptions) throws {
    self.profiler = profiler
    self.id = id
    self.mode = mode
    self.interval = interval
    let startTime = Self.clock(CLOCK_REALTIME)
    let startMonotonic = Self.clock(CLOCK_MONOTONIC)
    self.startTimeNanoseconds = startTime
    self.startMonotonicNanoseconds = startMonotonic
    self.symbolicationBudget = options.symbolicationBudget
    self.recordsKernelState = options.recordsKernelState
    self.includeProfilerThreads = options.includeProfilerThreads
    if mode == .alloc {
      backend = try AllocationBackend(
        options: options, startTimeNanoseconds: startTime, startMonotonicNanoseconds: startMonotonic)
    } else {
      backend = try SignalSamplingBackend(mode: mode, interval: interval, options: options)
    }
  }

  deinit {
    if !ended.load(ordering: .acquiring) {
      backend.cancel()
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
    var (collector, report) = backend.finish()
    let end = Self.clock(CLOCK_MONOTONIC)
    var builder = ProfileBuilder(
      mode: mode, startTimeNanoseconds: startTimeNanoseconds, startMonotonicNanoseconds: startMonotonicNanoseconds,
      durationNanoseconds: end - startMonotonicNanoseconds, report: report)
    builder.symbolicationBudget = symbolicationBudget
    builder.recordsKernelState = recordsKernelState
    // Dumps list every thread; profiles are of the app unless asked.
    builder.excludesProfilerThreads = !includeProfilerThreads && !recordsKernelState
    return builder.build(from: &collector)
  }

  /// Stops sampling and discards the samples. Safe to call more than once.
  public func cancel() {
    guard profiler.machine.withLock({ $0.stop(id) }) else { return }
    backend.cancel()
    ended.store(true, ordering: .releasing)
    profiler.machine.withLock { $0.finished(id) }
  }

  /// Symbolizes the continuous allocation totals.
  static func allocationProfile(_ recording: AllocationRecorder.Recording, durationNanoseconds: UInt64) -> Profile {
    var collector = recording.collector
    let builder = ProfileBuilder(
      mode: .alloc, startTimeNanoseconds: recording.startTimeNanoseconds,
      startMonotonicNanoseconds: recording.startMonotonicNanoseconds, durationNanoseconds: durationNanoseconds,
      report: AllocationBackend.report(recording))
    return builder.build(from: &collector)
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
