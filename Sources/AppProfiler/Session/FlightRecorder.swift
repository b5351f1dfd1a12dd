import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Keeps the last N seconds of cpu and wall samples, so "what happened in
/// the last 30 seconds" can be answered after the fact (Go 1.25's flight
/// recorder, async-profiler's `--loop`).
///
/// ```swift
/// try FlightRecorder.shared.start(seconds: 60)        // or APP_PROFILER_FLIGHT_RECORDER=60
/// // … something slow happens …
/// let cpu = FlightRecorder.shared.profile(mode: .cpu, lastSeconds: 30)
/// ```
///
/// It samples at 19 Hz (an odd rate, so it does not beat with the app's
/// timers) with samplers of its own — POSIX CPU timers for cpu, the wall
/// ticker for wall — so on-demand profiles at any interval, scrapes and
/// thread dumps run next to it. A thread of its own (`app-prof-flight`)
/// closes a window every second and builds its profile — function names
/// from the ELF symbol tables, no file:line (``SessionOptions/sourceLocations``:
/// DWARF work every second would cost a core) — so asking merges and
/// encodes only; the ring keeps `seconds` windows per mode and drops the
/// oldest. Memory and CPU: BENCHMARKS.md (`run.sh continuous`).
public final class FlightRecorder: Sendable {
  public static let shared = FlightRecorder()

  /// The default rate: 19 samples per second per thread.
  public static let defaultInterval: Duration = .nanoseconds(1_000_000_000 / 19)

  private struct Running: @unchecked Sendable {
    var seconds: Int
    var interval: Duration
    var sessions: [ProfilingSession]
    var thread: ProfilerThread?
  }

  private struct State: Sendable {
    var running: Running?
    var stopping = false
    var cpu: [Profile] = []
    var wall: [Profile] = []
  }

  private let state = Mutex(State())

  init() {}

  /// True between ``start(seconds:interval:options:)`` and ``stop()``.
  public var isRunning: Bool { state.withLock { $0.running != nil } }

  /// Seconds kept, nil when not running.
  public var seconds: Int? { state.withLock { $0.running?.seconds } }

  /// Starts recording. Keeps `seconds` (1 … 3600) of cpu and wall samples,
  /// taken every `interval`. A second start while running does nothing.
  /// With ``SessionOptions/includesSuspendedTasks`` the wall ring also
  /// counts every task on no thread (docs/tasks.md), as the profile server
  /// sets it for slow-request profiles.
  /// - Throws: ``ProfilerError`` when sampling cannot start (nothing is left running).
  public func start(seconds: Int = 60, interval: Duration = defaultInterval, options: SessionOptions = SessionOptions())
    throws
  {
    guard Profiler.isSupported else { throw ProfilerError.unsupportedPlatform }
    guard (1...3600).contains(seconds) else {
      throw ProfilerError.invalidParameter(name: "seconds", value: "\(seconds)", allowed: "1 ... 3600")
    }
    let claimed = state.withLock { state -> Bool in
      guard state.running == nil, !state.stopping else { return false }
      state.running = Running(seconds: seconds, interval: interval, sessions: [], thread: nil)
      state.cpu = []
      state.wall = []
      return true
    }
    guard claimed else { return }
    var sessions: [ProfilingSession] = []
    do {
      var options = options
      options.joinsRunningSampler = false
      options.cpuEngine = .posixTimers
      // A profile every second: names only (no continuous DWARF work).
      options.sourceLocations = false
      sessions.append(
        try Profiler.shared.attach(mode: .cpu, interval: interval, options: options, scope: nil, slot: .flightCPU))
      sessions.append(
        try Profiler.shared.attach(mode: .wall, interval: interval, options: options, scope: nil, slot: .flightWall))
    } catch {
      sessions.forEach { $0.cancel() }
      state.withLock { $0.running = nil }
      throw error
    }
    let started = sessions
    let thread = ProfilerThread(name: "app-prof-flight") { [self] in rotateLoop(started) }
    state.withLock { state in
      state.running?.sessions = sessions
      state.running?.thread = thread
    }
  }

  /// Stops recording and drops what was kept.
  public func stop() {
    let running = state.withLock { state -> Running? in
      guard let running = state.running, !state.stopping else { return nil }
      state.stopping = true
      return running
    }
    guard let running else { return }
    running.thread?.join()
    running.sessions.forEach { $0.cancel() }
    state.withLock { state in
      state.running = nil
      state.stopping = false
      state.cpu = []
      state.wall = []
    }
  }

  private var isStopping: Bool { state.withLock { $0.stopping } }

  /// Every second: each session's window so far becomes a profile in the ring.
  private func rotateLoop(_ sessions: [ProfilingSession]) {
    var deadline = ProfilingSession.clock(CLOCK_MONOTONIC)
    while true {
      deadline += 1_000_000_000
      while case let now = ProfilingSession.clock(CLOCK_MONOTONIC), now < deadline {
        if isStopping { return }
        var pause = timespec(tv_sec: 0, tv_nsec: Int(min(deadline - now, 50_000_000)))
        nanosleep(&pause, nil)
      }
      for session in sessions {
        guard let profile = try? session.rotateSynchronously() else { continue }
        state.withLock { state in
          let keep = state.running?.seconds ?? 0
          if session.mode == .wall {
            state.wall.append(profile)
            if state.wall.count > keep { state.wall.removeFirst(state.wall.count - keep) }
          } else {
            state.cpu.append(profile)
            if state.cpu.count > keep { state.cpu.removeFirst(state.cpu.count - keep) }
          }
        }
      }
    }
  }

  /// The samples of the last `lastSeconds` (whole one-second windows; the
  /// current, unfinished second is not in it) as one profile; nil when not
  /// running or nothing was recorded yet. Returns at once: the windows'
  /// profiles are built as they close.
  public func profile(mode: Profile.Mode = .cpu, lastSeconds: Int) -> Profile? {
    let windows = state.withLock { state -> [Profile] in
      let ring = mode == .wall ? state.wall : state.cpu
      return Array(ring.suffix(max(0, lastSeconds)))
    }
    guard var merged = Profile.merged(windows) else { return nil }
    merged.metadata["flight_recorder_windows"] = String(windows.count)
    return merged
  }

  /// Bytes the kept windows take, roughly (their samples, stacks, names).
  public var retainedBytes: Int {
    state.withLock { state in (state.cpu + state.wall).reduce(0) { $0 + Self.estimatedBytes($1) } }
  }

  static func estimatedBytes(_ profile: Profile) -> Int {
    var bytes = 0
    for thread in profile.threads {
      bytes += 64 + thread.name.utf8.count
      for sample in thread.samples {
        bytes += 64 + sample.values.count * 8 + sample.labels.reduce(0) { $0 + 32 + $1.key.utf8.count + $1.value.utf8.count }
      }
    }
    bytes += profile.stacks.reduce(0) { $0 + 32 + $1.count * 8 }
    bytes += profile.locations.reduce(0) { $0 + 48 + $1.lines.count * 16 }
    bytes += profile.functions.reduce(0) { $0 + 64 + $1.name.utf8.count + $1.systemName.utf8.count + $1.file.utf8.count }
    bytes += profile.mappings.reduce(0) { $0 + 64 + $1.path.utf8.count + $1.buildID.utf8.count }
    return bytes
  }
}
