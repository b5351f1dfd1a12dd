@_exported import AppProfilerFormats
import CAppProfiler
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Records whole-process profiles: every thread of this process, for a while.
///
/// ```swift
/// let profile = try await Profiler.shared.record(mode: .cpu, duration: .seconds(5))
/// let json = SpeedscopeEncoder().encode(profile)   // open in speedscope
/// ```
///
/// or, for a span you control:
///
/// ```swift
/// let session = try Profiler.shared.start(mode: .wall)
/// runWorkload()
/// let profile = try await session.stop()
/// ```
///
/// One sampler per kind (cpu, wall, alloc) runs per process at a time, the
/// kinds independently of each other. Sessions that ask for the same
/// sampling (mode, interval, sampler options) while it runs share it, each
/// getting the samples of its own window (up to 16 at once); a `start` that
/// asks for different sampling of a running kind throws
/// ``ProfilerError/busy`` at once.
/// Nothing exists while no session runs: no thread, no timer, no signal
/// handler, no buffer.
///
/// > Warning: The first session installs a process-wide handler for
/// > ``SessionOptions/signal`` (`SIGPROF` by default), and it stays installed
/// > for the life of the process: a signal of a session can stay pending on a
/// > thread that blocks it, and would kill the process under `SIG_DFL`.
/// > Signals that are not the profiler's go to the handler the app had
/// > before (dropped where it had none); see docs/signal-safety.md.
public final class Profiler: Sendable {
  /// The process's profiler.
  public static let shared = Profiler()

  /// The sampling slot of one kind: the state machine, the running sampler,
  /// where each of its consumers began reading. Held while a sampler arms or
  /// stops, so a session asking meanwhile waits and then joins or starts anew.
  struct Slot {
    var machine = SessionStateMachine<RunKey>()
    var run: SamplingRun?
    var marks: [UInt64: SampleCollector.Mark] = [:]
  }

  final class KindSlot: Sendable {
    let state = Mutex(Slot())
  }

  /// The samplers that run independently of each other: one per kind.
  enum SamplerKind: CaseIterable {
    case cpu, wall, alloc, block, mutex
    /// Thread dumps (``threadSnapshot(options:)``): wall, one tick.
    case snapshot
    /// The flight recorder's cpu and wall sampling (``FlightRecorder``).
    case flightCPU, flightWall

    init(_ mode: Profile.Mode) {
      switch mode {
      case .wall: self = .wall
      case .block: self = .block
      case .mutex: self = .mutex
      default: self = mode.isAllocation ? .alloc : .cpu
      }
    }

    /// The C session (cpu and wall kinds).
    var cMode: Int32 {
      switch self {
      case .cpu, .alloc, .block, .mutex: Int32(CAP_MODE_CPU)
      case .wall: Int32(CAP_MODE_WALL)
      case .snapshot: Int32(CAP_MODE_SNAPSHOT)
      case .flightCPU: Int32(CAP_MODE_FLIGHT_CPU)
      case .flightWall: Int32(CAP_MODE_FLIGHT_WALL)
      }
    }
  }

  /// One slot per kind: a cpu, a wall and an alloc sampler, the wall
  /// sampler of thread dumps and the flight recorder's can run at once.
  private let slots: [KindSlot] = SamplerKind.allCases.map { _ in KindSlot() }

  private func slot(for kind: SamplerKind) -> KindSlot {
    slots[SamplerKind.allCases.firstIndex(of: kind)!]
  }

  init() {}

  /// Whether this build can sample: Linux, unless built with
  /// `APP_PROFILER_NO_SAMPLER`. Elsewhere every session throws
  /// ``ProfilerError/unsupportedPlatform`` (the server answers 501).
  public static var isSupported: Bool { cap_sampler_available() != 0 }

  /// True while a sampler (of any kind) is arming, running or stopping.
  public var isBusy: Bool {
    slots.contains { slot in !slot.state.withLock { $0.machine.isIdle } }
  }

  /// The sampling interval when none is given: 10 ms (100 Hz), as Go's
  /// `runtime/pprof` and async-profiler's default. At 100 Hz a cpu profile
  /// is sampled with POSIX CPU timers (one timer per process thread, exact
  /// at intervals of a scheduler tick or more), which costs an HTTP server
  /// under wrk nothing measurable; the 1 ms of earlier versions needs perf
  /// events per thread, and each of a busy server's context switches then
  /// pays for them: 0.70× throughput on the benchmark (BENCHMARKS.md,
  /// `overhead-http`). 30 s at 100 Hz is 3,000 samples per busy thread,
  /// enough for functions above ~1 % of the time; pass 1 ms for short
  /// recordings of one hot path.
  public static let defaultInterval: Duration = .milliseconds(10)

  /// Records a profile of every thread for `duration`.
  ///
  /// - Parameters:
  ///   - mode: `.cpu` (threads using CPU) or `.wall` (every thread, running or blocked).
  ///   - duration: how long to sample; more than 0 s and at most 24 h.
  ///   - interval: time between samples, 100 µs … 1 s. Default
  ///     ``defaultInterval`` (10 ms, 100 Hz).
  ///   - options: engine, signal, buffer sizes.
  /// - Throws: ``ProfilerError/busy`` when another session runs,
  ///   ``ProfilerError/invalidParameter(name:value:allowed:)`` for a bad
  ///   argument, `CancellationError` when the task is cancelled (the session
  ///   is stopped and its samples discarded).
  public func record(
    mode: Profile.Mode = .cpu, duration: Duration, interval: Duration = Profiler.defaultInterval,
    options: SessionOptions = SessionOptions()
  ) async throws -> Profile {
    try Self.validate(duration: duration)
    let session = try start(mode: mode, interval: interval, options: options)
    do {
      try await Task.sleep(for: duration)
    } catch {
      session.cancel()
      throw CancellationError()
    }
    return try await session.stop()
  }

  /// ``record(mode:duration:interval:options:)`` on the calling thread,
  /// without Swift concurrency: it sleeps the thread, so it works while the
  /// app's cooperative pool, main actor or executors are blocked — the
  /// profile server records with it. `cancellation` ends the recording early
  /// (checked every 20 ms): the session is stopped, its samples dropped, and
  /// `CancellationError` thrown.
  public func recordSynchronously(
    mode: Profile.Mode = .cpu, duration: Duration, interval: Duration = Profiler.defaultInterval,
    options: SessionOptions = SessionOptions(), cancellation: RecordingCancellation? = nil
  ) throws -> Profile {
    try Self.validate(duration: duration)
    let session = try start(mode: mode, interval: interval, options: options)
    let deadline = ProfilingSession.clock(CLOCK_MONOTONIC) + duration.nanoseconds
    while true {
      if cancellation?.isCancelled == true {
        session.cancel()
        throw CancellationError()
      }
      let now = ProfilingSession.clock(CLOCK_MONOTONIC)
      guard now < deadline else { break }
      let slice = min(deadline - now, 20_000_000)
      // Interrupted (EINTR) or not, the loop re-reads the clock.
      var pause = timespec(tv_sec: Int(slice / 1_000_000_000), tv_nsec: Int(slice % 1_000_000_000))
      nanosleep(&pause, nil)
    }
    return try session.stopSynchronously()
  }

  /// Every thread's stack right now: a wall session of a single tick (each
  /// thread is interrupted once). Each thread of the result has one sample;
  /// idle means it was blocked; ``Profile/ThreadSamples/kernelState`` says in
  /// which system call. Encode with `ThreadDumpEncoder`.
  public func threadSnapshot(options: SessionOptions = SessionOptions()) async throws -> Profile {
    try threadSnapshotSynchronously(options: options)
  }

  /// ``threadSnapshot(options:)`` on the calling thread, without Swift
  /// concurrency (see ``recordSynchronously(mode:duration:interval:options:cancellation:)``).
  public func threadSnapshotSynchronously(options: SessionOptions = SessionOptions()) throws -> Profile {
    // One tick at 20 ms, then 10 ms for the handlers to finish before stop.
    // A sampler of its own (the snapshot kind), so a dump is taken while a
    // wall profile runs; dumps at once share it.
    var options = options
    options.recordsKernelState = true
    options.joinsRunningSampler = false
    let session = try attach(mode: .wall, interval: .milliseconds(20), options: options, scope: nil, kind: .snapshot)
    let deadline = ProfilingSession.clock(CLOCK_MONOTONIC) + 30_000_000
    while case let now = ProfilingSession.clock(CLOCK_MONOTONIC), now < deadline {
      var pause = timespec(tv_sec: 0, tv_nsec: Int(deadline - now))
      nanosleep(&pause, nil)  // EINTR: the loop re-reads the clock
    }
    return try session.stopSynchronously()
  }

  /// Starts a session; stop it with ``ProfilingSession/stop()``. While a
  /// session of the same mode, interval and sampler options runs, the new
  /// one shares its sampler (and gets the samples from now on).
  /// - Throws: ``ProfilerError/busy`` while sampling of this mode at another
  ///   interval or with other options runs
  ///   (or 16 sessions share it).
  public func start(
    mode: Profile.Mode = .cpu, interval: Duration = Profiler.defaultInterval,
    options: SessionOptions = SessionOptions()
  ) throws -> ProfilingSession {
    try attach(mode: mode, interval: interval, options: options, scope: nil)
  }

  /// Starts a task-scoped session: its profile holds only the samples of
  /// code run inside ``ProfilingSession/withScope(operation:)`` — that
  /// task and the child tasks it creates — while other work of the process
  /// is left out. Several may run at once (one per request, say), sharing
  /// one sampler with each other and with whole-process sessions of the
  /// same sampling. docs/labels.md says what a scope sees.
  public func startTaskScoped(
    mode: Profile.Mode = .cpu, interval: Duration = Profiler.defaultInterval,
    options: SessionOptions = SessionOptions()
  ) throws -> ProfilingSession {
    try attach(mode: mode, interval: interval, options: options, scope: .make())
  }

  func attach(
    mode: Profile.Mode, interval: Duration, options: SessionOptions, scope: LabelScope?, kind: SamplerKind? = nil
  ) throws -> ProfilingSession {
    let kind = kind ?? SamplerKind(mode)
    guard Self.isSupported else { throw ProfilerError.unsupportedPlatform }
    try Self.validate(mode: mode, interval: interval, options: options)
    var key = RunKey(mode: mode, interval: interval, options: options)
    // The session's window starts here, arming included (as it always has).
    var startTime = ProfilingSession.clock(CLOCK_REALTIME)
    var startMonotonic = ProfilingSession.clock(CLOCK_MONOTONIC)
    let kindSlot = slot(for: kind)
    let (run, consumer) = try kindSlot.state.withLock { slot throws -> (SamplingRun, UInt64) in
      // A scraper's session reads whatever sampler of its kind runs.
      if options.joinsRunningSampler, let running = slot.machine.runningKey { key = running }
      switch slot.machine.attach(key) {
      case .failure:
        throw ProfilerError.busy
      case .success(.joined(_, let consumer)):
        guard let run = slot.run else { throw ProfilerError.busy }
        run.consumerJoined()
        slot.marks[consumer] = run.backend.mark()
        return (run, consumer)
      case .success(.newRun(let id, let consumer)):
        do {
          let backend: any SessionBackend
          if mode.isAllocation {
            // The window of allocation sessions starts once the wrappers
            // are in place (building unwind tables first may take 0.5 s):
            // in-use growth is per second of that window.
            let installed = try AllocationBackend(
              options: options, startTimeNanoseconds: nil, startMonotonicNanoseconds: nil)
            startTime = installed.startTimeNanoseconds
            startMonotonic = installed.startMonotonicNanoseconds
            backend = installed
          } else if let lockKind = LockRecorder.Kind(mode) {
            let installed = try LockBackend(kind: lockKind, options: options)
            startTime = installed.startTimeNanoseconds
            startMonotonic = installed.startMonotonicNanoseconds
            backend = installed
          } else {
            backend = try SignalSamplingBackend(kind: kind, mode: mode, interval: interval, options: options)
          }
          let run = SamplingRun(id: id, slot: kindSlot, backend: backend)
          _ = slot.machine.armed(id)
          slot.run = run
          // The first consumer reads everything the new sampler took. An
          // alloc window over continuous sampling is fresh too, but the
          // continuous sampler's counters run on: its mark holds them.
          slot.marks[consumer] = mode.isEvent ? backend.mark() : SampleCollector.Mark()
          return (run, consumer)
        } catch {
          slot.machine.failed(id)
          throw error
        }
      }
    }
    return ProfilingSession(
      profiler: self, run: run, consumer: consumer, mode: mode, interval: key.interval, options: options, scope: scope,
      sampler: kind.cMode, startTimeNanoseconds: startTime, startMonotonicNanoseconds: startMonotonic)
  }

  enum Detached {
    /// The samples of the run (all of them: subtract the mark) and its report.
    case kept(SampleCollector, SessionReport, SampleCollector.Mark)
    case dropped
    case notAttached
  }

  /// A consumer leaves its run: the last one stops the sampler.
  func detach(_ consumer: UInt64, of run: SamplingRun, keepingSamples: Bool) -> Detached {
    run.slot.state.withLock { slot in
      guard slot.run === run else { return .notAttached }
      switch slot.machine.detach(consumer) {
      case .notAttached:
        return .notAttached
      case .others:
        let mark = slot.marks.removeValue(forKey: consumer) ?? SampleCollector.Mark()
        guard keepingSamples else { return .dropped }
        let (collector, report) = run.backend.snapshot(keeping: Array(slot.marks.values))
        return .kept(collector, report, mark)
      case .last(let id):
        let mark = slot.marks.removeValue(forKey: consumer) ?? SampleCollector.Mark()
        slot.run = nil
        slot.marks = [:]
        defer { slot.machine.finished(id) }
        guard keepingSamples else {
          run.backend.cancel()
          return .dropped
        }
        let (collector, report) = run.backend.finish()
        return .kept(collector, report, mark)
      }
    }
  }

  /// A consumer takes the samples of its window so far and goes on reading
  /// from exactly where they end (the mark is taken from the same snapshot,
  /// so consecutive windows neither overlap nor leave a gap).
  func rotate(_ consumer: UInt64, of run: SamplingRun) -> Detached {
    run.slot.state.withLock { slot in
      guard slot.run === run, let mark = slot.marks[consumer] else { return .notAttached }
      let (collector, report) = run.backend.snapshot(keeping: Array(slot.marks.values))
      slot.marks[consumer] = collector.mark(
        counters: SamplerCounters(
          recorded: report.samplesRecorded, dropped: report.samplesDropped, complete: report.completeStacks))
      return .kept(collector, report, mark)
    }
  }

  /// Function names (demangled) of code addresses in this process, for the
  /// addresses that have one; served by `/debug/pprof/symbol`.
  public func symbolNames(for addresses: [UInt64]) -> [UInt64: String] {
    let frames = Symbolizer.shared.resolve(addresses, in: ImageMap.current())
    var names: [UInt64: String] = [:]
    for (address, frame) in zip(addresses, frames) {
      if let name = frame.name { names[address] = name }
    }
    return names
  }
}
