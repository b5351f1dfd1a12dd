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

  /// One sampler per slot (cpu, wall, alloc, block, mutex, thread dumps,
  /// the flight recorder's cpu and wall) can run at once.
  let slots = SamplerSlots()

  init() {}

  /// Whether this build can sample: Linux, unless built with
  /// `APP_PROFILER_NO_SAMPLER`. Elsewhere every session throws
  /// ``ProfilerError/unsupportedPlatform`` (the server answers 501).
  public static var isSupported: Bool { cap_sampler_available() != 0 }

  /// True while a sampler (of any kind) is arming, running or stopping.
  public var isBusy: Bool { slots.isBusy }

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
    let session = try attach(mode: .wall, interval: .milliseconds(20), options: options, scope: nil, slot: .snapshot)
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

  /// A new consumer of the sampler of `slot` (by default the one of
  /// `mode`): joins it when it runs with the same sampling, else starts it.
  func attach(
    mode: Profile.Mode, interval: Duration, options: SessionOptions, scope: LabelScope?, slot: SamplerSlotID? = nil
  ) throws -> ProfilingSession {
    let slot = slot ?? SamplerSlotID(for: mode)
    guard Self.isSupported else { throw ProfilerError.unsupportedPlatform }
    try Self.validate(mode: mode, interval: interval, options: options)
    // The session's window starts here, arming included (as it always has),
    // unless the sampler says when (the wrappers: once installed).
    var start = (realtime: ProfilingSession.clock(CLOCK_REALTIME), monotonic: ProfilingSession.clock(CLOCK_MONOTONIC))
    let attached = try slots[slot].attach(
      RunKey(mode: mode, interval: interval, options: options), joinsRunning: options.joinsRunningSampler,
      isEvent: mode.isEvent
    ) {
      let made = try makeSessionBackend(slot: slot, mode: mode, interval: interval, options: options)
      if let windowStart = made.windowStart { start = windowStart }
      return made.backend
    }
    return ProfilingSession(
      run: attached.run, consumer: attached.consumer, mode: mode, interval: attached.key.interval, options: options,
      scope: scope, startTimeNanoseconds: start.realtime, startMonotonicNanoseconds: start.monotonic)
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
