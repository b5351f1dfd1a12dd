@_spi(Support) import AppProfiler
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// What the push exporters (Pyroscope, OTLP) share: consecutive windows of
/// running sessions, a bounded queue, uploads retried with backoff and
/// jitter, one log line per failure streak — on two threads of their own
/// (`app-prof-push`, `app-prof-upload`), never the app's executors or the
/// cooperative pool, so a stuck app still uploads what it was doing. An
/// exporter says how a window becomes uploads (`encode`) and how one is
/// sent (`send`).
public final class ProfilePusher: Sendable {
  /// Counters since start.
  public struct Statistics: Sendable, Hashable {
    /// Windows accepted by the server.
    public var uploaded = 0
    /// Windows dropped because the queue was full (or left at stop).
    public var dropped = 0
    /// Windows the server refused (4xx other than 429): not retried.
    public var rejected = 0
    /// Upload attempts that failed (each retry counts).
    public var failedAttempts = 0
    /// Windows waiting now.
    public var queued = 0
    /// Most windows ever waiting at once (at most the queue's capacity).
    public var maxQueued = 0

    public init() {}
  }

  /// One request's body and what the exporter needs to send it.
  public struct Upload: Sendable {
    public var body: [UInt8]
    public var from: Int64
    public var until: Int64
    public var info: [String: String]

    public init(body: [UInt8], from: Int64, until: Int64, info: [String: String] = [:]) {
      self.body = body
      self.from = from
      self.until = until
      self.info = info
    }
  }

  public enum Outcome: Sendable {
    case uploaded
    /// Connection errors, 5xx, 429: tried again with backoff.
    case retry(String)
    /// Other refusals: dropped, counted.
    case rejected(String)
  }

  /// Where the exporter pushes, for log lines ("Pyroscope", "the OTLP endpoint").
  public let destination: String
  /// What makes two exporters the same push (kind, URL, name): one process
  /// pushes each window to it once, however many exporters were started
  /// (the profile server's from the environment, the app's own).
  public let identity: String
  public let interval: Duration
  public let queueCapacity: Int
  public let maxBackoff: Duration
  private let logger: Logger
  private let encode: @Sendable (_ windows: [(mode: Profile.Mode, profile: Profile)], _ from: Int64, _ until: Int64) -> [Upload]
  private let send: @Sendable (Upload) -> Outcome

  private struct State: Sendable {
    var started = false
    /// Started while another pusher of the same identity ran: no sessions,
    /// no threads, nothing pushed.
    var idle = false
    var stopping = false
    /// The push thread has queued its last windows (after stop).
    var pushDone = false
    var queue: [Upload] = []
    var statistics = Statistics()
    var failing = false
    var streakFailures = 0
    var streakDropped = 0
  }

  private let state = Mutex(State())
  private let threads = Mutex<[ProfilerThread]>([])

  /// Identities pushing in this process now, and the pusher that pushes each.
  private static let pushing = Mutex<[String: ObjectIdentifier]>([:])

  public init(
    destination: String, identity: String, interval: Duration, queueCapacity: Int, maxBackoff: Duration, logger: Logger,
    encode: @escaping @Sendable ([(mode: Profile.Mode, profile: Profile)], Int64, Int64) -> [Upload],
    send: @escaping @Sendable (Upload) -> Outcome
  ) {
    self.destination = destination
    self.identity = identity
    self.interval = interval
    self.queueCapacity = queueCapacity
    self.maxBackoff = maxBackoff
    self.logger = logger
    self.encode = encode
    self.send = send
  }

  public var statistics: Statistics {
    state.withLock { state in
      var statistics = state.statistics
      statistics.queued = state.queue.count
      return statistics
    }
  }

  public var isRunning: Bool { state.withLock { $0.started && !$0.idle } }

  /// What ``start(_:)`` did.
  public enum Start: Sendable, Equatable {
    /// Its sessions run and their windows are pushed.
    case pushing
    /// This pusher was running already.
    case alreadyRunning
    /// Another pusher of the same ``identity`` pushes in this process: this
    /// one stays idle (started, so `stop()` is still right), and each
    /// window goes up once.
    case duplicate
  }

  /// Starts the sessions `makeSessions` returns (it throws what starting
  /// them throws; nothing is left running then) and pushes their windows.
  @discardableResult
  public func start(_ makeSessions: () throws -> [ProfilingSession]) throws -> Start {
    guard state.withLock({ state in
      if state.started { return false }
      state.started = true
      state.idle = false
      state.stopping = false
      state.pushDone = false
      return true
    }) else { return .alreadyRunning }
    let me = ObjectIdentifier(self)
    let claimed = Self.pushing.withLock { pushing -> Bool in
      if let owner = pushing[identity], owner != me { return false }
      pushing[identity] = me
      return true
    }
    guard claimed else {
      state.withLock { $0.idle = true }
      return .duplicate
    }
    let sessions: [ProfilingSession]
    do {
      sessions = try makeSessions()
    } catch {
      state.withLock { $0.started = false }
      release()
      throw error
    }
    let box = SessionsBox(sessions)
    let push = ProfilerThread(name: "app-prof-push") { [self] in pushLoop(box) }
    let upload = ProfilerThread(name: "app-prof-upload") { [self] in uploadLoop() }
    threads.withLock { $0 = [push, upload] }
    return .pushing
  }

  private func release() {
    let me = ObjectIdentifier(self)
    Self.pushing.withLock { pushing in
      if pushing[identity] == me { pushing[identity] = nil }
    }
  }

  /// Ends the current window, tries once more to upload what is queued
  /// (each window one attempt of up to a request timeout; the rest is
  /// dropped, counted, at the first failure), and stops. Safe to call more
  /// than once.
  public func stop() {
    guard let idle = state.withLock({ state -> Bool? in
      guard state.started, !state.stopping else { return nil }
      if state.idle {
        state.started = false
        state.idle = false
        return true
      }
      state.stopping = true
      return false
    }) else { return }
    if idle { return }
    defer { release() }
    let running = threads.withLock { threads in
      defer { threads = [] }
      return threads
    }
    // The push thread queues the last windows, then the upload thread tries
    // them once more and ends.
    running.first?.join()
    state.withLock { $0.pushDone = true }
    running.dropFirst().forEach { $0.join() }
    state.withLock { $0.started = false }
  }

  /// Starts a session of each mode (`interval` for cpu and wall) reading
  /// the running samplers; all or none: a failure cancels those started.
  public static func startSessions(
    _ modes: [Profile.Mode], interval: Duration, options: SessionOptions
  ) throws -> [ProfilingSession] {
    var options = options
    options.joinsRunningSampler = true
    var sessions: [ProfilingSession] = []
    do {
      for mode in modes { sessions.append(try Profiler.shared.start(mode: mode, interval: interval, options: options)) }
    } catch {
      sessions.forEach { $0.cancel() }
      throw error
    }
    return sessions
  }

  final class SessionsBox: @unchecked Sendable {
    let sessions: [ProfilingSession]
    init(_ sessions: [ProfilingSession]) { self.sessions = sessions }
  }

  private var isStopping: Bool { state.withLock { $0.stopping } }

  static func realtimeNanoseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
  }

  /// Waits until `deadline` (realtime, ns) or stop; true when stopping.
  private func sleep(until deadline: Int64) -> Bool {
    while true {
      if isStopping { return true }
      let left = deadline - Self.realtimeNanoseconds()
      if left <= 0 { return false }
      var pause = timespec(tv_sec: 0, tv_nsec: Int(min(left, 50_000_000)))
      nanosleep(&pause, nil)
    }
  }

  /// Window boundaries on whole seconds of the realtime clock, one interval
  /// apart: each window's `until` is the next one's `from`.
  private func pushLoop(_ box: SessionsBox) {
    let seconds = max(1, Int64(interval.components.seconds))
    var from = Self.realtimeNanoseconds() / 1_000_000_000
    var until = from + seconds
    while true {
      let stopping = sleep(until: until * 1_000_000_000)
      let windowEnd = stopping ? max(from + 1, Self.realtimeNanoseconds() / 1_000_000_000) : until
      var windows: [(mode: Profile.Mode, profile: Profile)] = []
      for session in box.sessions {
        do {
          windows.append((session.mode, stopping ? try session.stopSynchronously() : try session.rotateSynchronously()))
        } catch {
          continue
        }
      }
      for upload in encode(windows, from, windowEnd) { enqueue(upload) }
      if stopping { return }
      from = until
      until += seconds
    }
  }

  private func enqueue(_ upload: Upload) {
    let dropped = state.withLock { state -> Bool in
      var dropped = false
      if state.queue.count >= queueCapacity {
        state.queue.removeFirst()
        state.statistics.dropped += 1
        state.streakDropped += 1
        dropped = true
      }
      state.queue.append(upload)
      state.statistics.maxQueued = max(state.statistics.maxQueued, state.queue.count)
      return dropped
    }
    if dropped && !state.withLock({ $0.failing }) {
      logger.warning("app-profiler dropped an upload to \(destination): queue full (\(queueCapacity))")
    }
  }

  /// Uploads the queue's head until it is accepted or refused; backs off
  /// while it fails. After stop: one more try of what is queued, then ends.
  private func uploadLoop() {
    var backoff: Double = 1
    let maxBackoff = Double(max(1, maxBackoff.components.seconds))
    while true {
      let (next, pushDone) = state.withLock { state in (state.queue.first, state.pushDone) }
      guard let upload = next else {
        if pushDone { return }
        var pause = timespec(tv_sec: 0, tv_nsec: 50_000_000)
        nanosleep(&pause, nil)
        continue
      }
      switch send(upload) {
      case .uploaded:
        backoff = 1
        let ended = state.withLock { state -> (Int, Int)? in
          if !state.queue.isEmpty { state.queue.removeFirst() }
          state.statistics.uploaded += 1
          guard state.failing else { return nil }
          defer {
            state.failing = false
            state.streakFailures = 0
            state.streakDropped = 0
          }
          return (state.streakFailures, state.streakDropped)
        }
        if let (failures, dropped) = ended {
          logger.info(
            "app-profiler uploads to \(destination) again",
            metadata: ["failed_attempts": "\(failures)", "dropped_windows": "\(dropped)"])
        }
      case .rejected(let reason):
        let first = state.withLock { state -> Bool in
          if !state.queue.isEmpty { state.queue.removeFirst() }
          state.statistics.rejected += 1
          defer { state.failing = true }
          return !state.failing
        }
        if first { logger.error("\(destination) refused an upload, dropped: \(reason)") }
      case .retry(let reason):
        let (first, pushDone) = state.withLock { state -> (Bool, Bool) in
          state.statistics.failedAttempts += 1
          state.streakFailures += 1
          defer { state.failing = true }
          return (!state.failing, state.pushDone)
        }
        if first {
          logger.error(
            "app-profiler cannot upload to \(destination) (retrying with backoff; logged once until it works): \(reason)")
        }
        if pushDone {
          // Stopping: what is left is dropped, counted.
          state.withLock { state in
            state.statistics.dropped += state.queue.count
            state.queue.removeAll()
          }
          return
        }
        let wait = min(backoff, maxBackoff) * Double.random(in: 0.75...1.25)
        backoff = min(backoff * 2, maxBackoff)
        _ = sleep(until: Self.realtimeNanoseconds() + Int64(wait * 1e9))
      }
    }
  }
}
