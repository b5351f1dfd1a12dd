import AppProfilerFormats
import CAppProfiler
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A running profiling session. Get one from ``Profiler/start(mode:interval:options:)``
/// and end it with ``stop()`` (keeps the samples) or ``cancel()`` (drops them).
/// Dropping the last reference without either stops it too.
///
/// Sessions that ask for the same sampling (mode, interval, sampler
/// options) while one runs share its sampler: each is a consumer that gets
/// the samples taken between its own start and stop. A task-scoped session
/// (``Profiler/startTaskScoped(mode:interval:options:)``) keeps only the
/// samples of code run in ``withScope(operation:)``.
public final class ProfilingSession: Sendable {
  public let mode: Profile.Mode
  public let interval: Duration

  private let run: SamplingRun
  private let consumer: UInt64
  /// Where the current window began (``rotateSynchronously()`` moves it).
  private let window: Mutex<(realtime: UInt64, monotonic: UInt64)>
  private let ended = Atomic<Bool>(false)
  private let symbolicationBudget: Duration?
  private let sourceLocations: Bool
  private let recordsKernelState: Bool
  private let includeProfilerThreads: Bool
  /// Task-scoped sessions: the scope their samples carry.
  private let scope: LabelScope?
  /// Wall, not scoped: every task's time off threads too.
  private let includesSuspendedTasks: Bool
  init(
    run: SamplingRun, consumer: UInt64, mode: Profile.Mode, interval: Duration, options: SessionOptions,
    scope: LabelScope?, startTimeNanoseconds: UInt64, startMonotonicNanoseconds: UInt64
  ) {
    self.run = run
    self.consumer = consumer
    self.mode = mode
    self.interval = interval
    self.window = Mutex((startTimeNanoseconds, startMonotonicNanoseconds))
    self.symbolicationBudget = options.symbolicationBudget
    self.sourceLocations = options.sourceLocations
    self.recordsKernelState = options.recordsKernelState
    self.includeProfilerThreads = options.includeProfilerThreads
    self.scope = scope
    self.includesSuspendedTasks = mode == .wall && scope == nil && options.includesSuspendedTasks
    // Wall profiles of a scope also count its tasks' time off threads.
    if let scope, mode == .wall { TaskWall.shared.begin(scope: scope.value, interval: interval) }
    if includesSuspendedTasks { TaskWall.shared.beginProcess(slot: run.slot.id, interval: interval) }
  }

  deinit {
    if !ended.load(ordering: .acquiring) {
      _ = run.slot.detach(consumer, of: run, keepingSamples: false)
      endTaskWall()
    }
  }

  private func endTaskWall() {
    if let scope, mode == .wall { TaskWall.shared.end(scope: scope.value) }
    if includesSuspendedTasks { TaskWall.shared.endProcess(slot: run.slot.id) }
  }

  /// True for a session from ``Profiler/startTaskScoped(mode:interval:options:)``.
  public var isTaskScoped: Bool { scope != nil }

  /// Runs `operation` so that its samples — of this task, of the child
  /// tasks it creates (async let, task groups, `Task {}`), in every mode —
  /// are this task-scoped session's. Labels in effect stay. In a session
  /// that is not task-scoped, just runs `operation`.
  public func withScope<R>(
    isolation: isolated (any Actor)? = #isolation, operation: () async throws -> R
  ) async rethrows -> R {
    guard let scope else { return try await operation() }
    return try await Profiler.withScope(scope, isolation: isolation) {
      guard mode == .wall else { return try await operation() }
      TaskWall.shared.enter(scope: scope.value, labelID: TaskLabels.current?.id ?? 0)
      defer { TaskWall.shared.leave(scope: scope.value) }
      return try await operation()
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
    guard case .kept(let all, let report, let mark) = run.slot.detach(consumer, of: run, keepingSamples: true) else {
      throw ProfilerError.unsupported("this session has already been stopped")
    }
    ended.store(true, ordering: .releasing)
    endTaskWall()
    let start = window.withLock { $0 }
    let built = profile(all, report, since: mark, start: start, end: Self.clock(CLOCK_MONOTONIC))
    FreedMemory.release()
    return built
  }

  /// The profile of the window so far, and sampling goes on in a new window
  /// that begins exactly where this one ends: no sample is in both, none is
  /// lost between them. For exporters that push a profile every interval.
  /// - Throws: ``ProfilerError/unsupported(_:)`` when the session was stopped.
  public func rotateSynchronously() throws -> Profile {
    let (start, end, kept) = window.withLock { window in
      let kept = run.slot.rotate(consumer, of: run)
      let start = window
      window = (Self.clock(CLOCK_REALTIME), Self.clock(CLOCK_MONOTONIC))
      return (start, window.monotonic, kept)
    }
    guard case .kept(let all, let report, let mark) = kept else {
      throw ProfilerError.unsupported("this session has been stopped")
    }
    let built = profile(all, report, since: mark, start: start, end: end)
    // A window that read symbol tables for the first time (continuous
    // exporters, the flight recorder): give back what that took.
    FreedMemory.release()
    return built
  }

  private func profile(
    _ all: SampleCollector, _ report: SessionReport, since mark: SampleCollector.Mark,
    start: (realtime: UInt64, monotonic: UInt64), end: UInt64
  ) -> Profile {
    var report = report
    var collector = all.since(mark)
    // Task wall samples: a scope's for its session, every task's for a
    // session that asked (includesSuspendedTasks), none for the others.
    if scope == nil { collector.dropSamples(ofThread: SampleCollector.suspendedTasksThread) }
    if !includesSuspendedTasks { collector.dropSamples(ofThread: SampleCollector.allTasksThread) }
    report.subtract(mark.counters)
    report.metadata["session_consumers"] = String(run.consumersSeen)
    if let scope {
      let recorded = report.samplesRecorded
      collector.keepSamples { LabelScope.of(labelID: $0) == scope.value }
      let kept = collector.recordCount
      // Counters of the sampler are for every sample; a scope gets its
      // share. Lost samples cannot be told apart by scope.
      report.metadata["session_samples_dropped"] = String(report.samplesDropped)
      report.metadata["task_scoped"] = "true"
      report.samplesDropped = 0
      report.completeStacks = recorded > 0 ? report.completeStacks * Int64(kept) / recorded : 0
      report.samplesRecorded = Int64(kept)
    }
    var builder = ProfileBuilder(
      mode: mode, startTimeNanoseconds: start.realtime, startMonotonicNanoseconds: start.monotonic,
      durationNanoseconds: end > start.monotonic ? end - start.monotonic : 0, report: report)
    builder.symbolicationBudget = symbolicationBudget
    builder.sourceLocations = sourceLocations
    builder.recordsKernelState = recordsKernelState
    // Dumps list every thread; profiles are of the app unless asked.
    builder.excludesProfilerThreads = !includeProfilerThreads && !recordsKernelState
    return builder.build(from: &collector)
  }

  /// Stops sampling and discards the samples. Safe to call more than once.
  public func cancel() {
    if case .notAttached = run.slot.detach(consumer, of: run, keepingSamples: false) { return }
    ended.store(true, ordering: .releasing)
    endTaskWall()
  }

  /// Symbolizes the continuous allocation totals (`.heap`: with what is
  /// still alive).
  static func allocationProfile(
    _ recording: AllocationRecorder.Recording, durationNanoseconds: UInt64, mode: Profile.Mode = .alloc
  ) -> Profile {
    var collector = recording.collector
    let builder = ProfileBuilder(
      mode: mode, startTimeNanoseconds: recording.startTimeNanoseconds,
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
