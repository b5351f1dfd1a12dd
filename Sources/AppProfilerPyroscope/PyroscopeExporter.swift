// Built only with the `Pyroscope` trait: `.package(url: …, traits: [.defaults, "Pyroscope"])`.
#if Pyroscope
@_spi(Support) @_spi(Configuration) import AppProfiler
import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import ServiceLifecycle
import Synchronization

/// Where and how ``PyroscopeExporter`` pushes.
public struct PyroscopeConfiguration: Sendable {
  public struct BasicAuth: Sendable, Hashable {
    public var user: String
    public var password: String
    public init(user: String, password: String) {
      self.user = user
      self.password = password
    }
  }

  /// The Pyroscope server, e.g. `http://pyroscope:4040` (`/ingest` is appended).
  public var serverURL: String
  /// The application name: `<name>.cpu{tags}` in Pyroscope.
  public var applicationName: String
  /// Static tags of every upload (`region=eu,env=prod`); keys are
  /// sanitized to `[A-Za-z0-9_]`.
  public var tags: [String: String] = [:]
  /// One profile per interval, consecutive intervals tiling time. Default 15 s.
  public var uploadInterval: Duration = .seconds(15)
  /// cpu sampling interval. Default 10 ms (100 Hz): timers, no cost per
  /// context switch (docs/sampling.md).
  public var cpuInterval: Duration = .milliseconds(10)
  /// Also push allocation profiles of each interval (`<name>.alloc_space`).
  /// Every allocation then passes a wrapper (BENCHMARKS.md, alloc-overhead).
  public var allocations = false
  public var basicAuth: BasicAuth?
  public var bearerToken: String?
  /// Grafana Cloud / multi-tenant Pyroscope: the `X-Scope-OrgID` header.
  public var tenantID: String?
  /// Profiles waiting for upload at most; past it the oldest is dropped (counted).
  public var queueCapacity = 8
  /// One upload attempt at most.
  public var requestTimeout: Duration = .seconds(10)
  /// Retries of a failed upload back off exponentially (1 s, 2 s, …) with
  /// ±25 % jitter, up to this.
  public var maxBackoff: Duration = .seconds(60)
  /// Sample labels left out of uploads: each value would be a series of its
  /// own in Pyroscope (route and method stay).
  public var droppedLabels: Set<String> = ["trace_id", "span_id"]
  /// Sampler options (engine, signal, …) of the sessions.
  public var sessionOptions = SessionOptions()

  public init(serverURL: String, applicationName: String) {
    self.serverURL = serverURL
    self.applicationName = applicationName
  }

  /// An invalid `APP_PROFILER_PYROSCOPE_*` variable (the package's one
  /// ``AppProfiler/EnvironmentError``).
  public typealias EnvironmentError = AppProfiler.EnvironmentError

  /// From `APP_PROFILER_PYROSCOPE_*` variables; nil when
  /// `APP_PROFILER_PYROSCOPE_URL` is unset or empty.
  ///
  /// | variable | meaning |
  /// |---|---|
  /// | `APP_PROFILER_PYROSCOPE_URL` | server, e.g. `http://pyroscope:4040` |
  /// | `APP_PROFILER_PYROSCOPE_APP_NAME` | application name (default: the executable's name) |
  /// | `APP_PROFILER_PYROSCOPE_TAGS` | `k=v,k=v` |
  /// | `APP_PROFILER_PYROSCOPE_USER`, `APP_PROFILER_PYROSCOPE_PASSWORD` | basic auth |
  /// | `APP_PROFILER_PYROSCOPE_TOKEN` | bearer token |
  /// | `APP_PROFILER_PYROSCOPE_TENANT` | `X-Scope-OrgID` |
  /// | `APP_PROFILER_PYROSCOPE_INTERVAL` | upload interval, seconds (default 15) |
  /// | `APP_PROFILER_PYROSCOPE_ALLOCATIONS` | `1`: also push allocation profiles |
  public static func fromEnvironment(
    _ environment: [String: String] = ProcessInfo.processInfo.environment
  ) throws -> PyroscopeConfiguration? {
    let reader = EnvironmentReader(environment)
    guard let url = reader.nonEmpty("APP_PROFILER_PYROSCOPE_URL") else { return nil }
    guard let parsed = URL(string: url), ["http", "https"].contains(parsed.scheme ?? ""), parsed.host != nil else {
      throw EnvironmentError(variable: "APP_PROFILER_PYROSCOPE_URL", value: url, allowed: "an http:// or https:// URL")
    }
    let name =
      reader.nonEmpty("APP_PROFILER_PYROSCOPE_APP_NAME")
      ?? URL(fileURLWithPath: CommandLine.arguments.first ?? "swift-app").lastPathComponent
    var configuration = PyroscopeConfiguration(serverURL: url, applicationName: name)
    if let tags = reader.nonEmpty("APP_PROFILER_PYROSCOPE_TAGS") {
      for pair in tags.split(separator: ",") {
        let parts = pair.split(separator: "=", maxSplits: 1)
        guard parts.count == 2, !parts[0].isEmpty else {
          throw EnvironmentError(variable: "APP_PROFILER_PYROSCOPE_TAGS", value: tags, allowed: "key=value[,key=value…]")
        }
        configuration.tags[String(parts[0]).trimmingCharacters(in: .whitespaces)] =
          String(parts[1]).trimmingCharacters(in: .whitespaces)
      }
    }
    if let user = reader.nonEmpty("APP_PROFILER_PYROSCOPE_USER") {
      configuration.basicAuth = BasicAuth(user: user, password: reader.string("APP_PROFILER_PYROSCOPE_PASSWORD") ?? "")
    }
    if let token = reader.nonEmpty("APP_PROFILER_PYROSCOPE_TOKEN") { configuration.bearerToken = token }
    if let tenant = reader.nonEmpty("APP_PROFILER_PYROSCOPE_TENANT") { configuration.tenantID = tenant }
    if let seconds = try reader.int("APP_PROFILER_PYROSCOPE_INTERVAL", 1...3600, unit: "seconds") {
      configuration.uploadInterval = .seconds(seconds)
    }
    if let allocations = try reader.bool("APP_PROFILER_PYROSCOPE_ALLOCATIONS") { configuration.allocations = allocations }
    return configuration
  }
}

/// Pushes a profile of every upload interval to Grafana Pyroscope's ingest
/// API (`POST /ingest?name=…&from=…&until=…&format=pprof`, the profile as the
/// multipart field `profile`), the way the Pyroscope SDKs do.
///
/// ```swift
/// let exporter = PyroscopeExporter(configuration: .init(serverURL: "http://pyroscope:4040", applicationName: "orders"))
/// let group = ServiceGroup(services: [app, exporter], logger: logger)
/// ```
///
/// or `PyroscopeExporter.fromEnvironment()` with `APP_PROFILER_PYROSCOPE_URL`
/// set (nil otherwise). Consecutive windows tile time: each begins exactly
/// where the previous ended (``AppProfiler/ProfilingSession/rotateSynchronously()``),
/// so no sample is in two uploads or in none. The exporter is a consumer of
/// the process's cpu sampler like any profile: an on-demand profile or a
/// scrape of the same kind runs next to it. Profiles carry function names
/// from the ELF symbol tables, without file:line (see
/// ``AppProfiler/SessionOptions/sourceLocations``). Sampling, encoding and upload
/// run on two threads of their own (`app-prof-push`, `app-prof-upload`),
/// never the app's executors or the cooperative pool, so a stuck app still
/// uploads what it was doing. Failed uploads (connection errors, 5xx, 429)
/// are retried with backoff while newer windows queue (bounded, oldest
/// dropped, counted); one log line per failure streak, one when it ends.
public final class PyroscopeExporter: Service, Sendable {
  /// Counters since start.
  public struct Statistics: Sendable, Hashable {
    /// Windows accepted by the server.
    public var uploaded = 0
    /// Windows dropped because the queue was full.
    public var dropped = 0
    /// Windows the server refused (4xx other than 429): not retried.
    public var rejected = 0
    /// Upload attempts that failed (each retry counts).
    public var failedAttempts = 0
    /// Windows waiting now.
    public var queued = 0
    /// Most windows ever waiting at once (at most the queue's capacity).
    public var maxQueued = 0
  }

  public let configuration: PyroscopeConfiguration
  private let logger: Logger
  private let client: HTTPClient

  struct Upload: Sendable {
    var name: String
    var from: Int64
    var until: Int64
    var sampleRate: Int
    var body: [UInt8]
  }

  private struct State: Sendable {
    var started = false
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

  public init(
    configuration: PyroscopeConfiguration, logger: Logger = Logger(label: "app-profiler.pyroscope"),
    httpClient: HTTPClient = .shared
  ) {
    self.configuration = configuration
    self.logger = logger
    self.client = httpClient
  }

  /// An exporter configured by `APP_PROFILER_PYROSCOPE_*`
  /// (``PyroscopeConfiguration/fromEnvironment(_:)``), or nil when
  /// `APP_PROFILER_PYROSCOPE_URL` is unset — or invalid: then one error line
  /// is logged and the app runs on without it.
  public static func fromEnvironment(
    _ environment: [String: String] = ProcessInfo.processInfo.environment,
    logger: Logger = Logger(label: "app-profiler.pyroscope")
  ) -> PyroscopeExporter? {
    do {
      guard let configuration = try PyroscopeConfiguration.fromEnvironment(environment) else { return nil }
      return PyroscopeExporter(configuration: configuration, logger: logger)
    } catch {
      logger.error("app-profiler does not push to Pyroscope: \(error)")
      return nil
    }
  }

  public var statistics: Statistics {
    state.withLock { state in
      var statistics = state.statistics
      statistics.queued = state.queue.count
      return statistics
    }
  }

  /// Runs until graceful shutdown (swift-service-lifecycle), then uploads
  /// the last window and stops.
  public func run() async throws {
    try start()
    try? await gracefulShutdown()
    // stop() joins the threads (the last upload may take a request
    // timeout): off the cooperative pool.
    await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
      let stopper = ProfilerThread(name: "app-prof-stop") { [self] in
        stop()
        done.resume()
      }
      _ = stopper
    }
  }

  /// Starts sampling and pushing. Throws what starting the sessions throws
  /// (``AppProfiler/ProfilerError``); nothing is left running then.
  public func start() throws {
    guard state.withLock({ state in
      if state.started { return false }
      state.started = true
      state.stopping = false
      state.pushDone = false
      return true
    }) else { return }
    var sessions: [ProfilingSession] = []
    do {
      var options = configuration.sessionOptions
      options.joinsRunningSampler = true
      // A profile every interval: names only (no continuous DWARF work).
      options.sourceLocations = false
      sessions.append(try Profiler.shared.start(mode: .cpu, interval: configuration.cpuInterval, options: options))
      if configuration.allocations {
        sessions.append(try Profiler.shared.start(mode: .alloc, options: options))
      }
    } catch {
      sessions.forEach { $0.cancel() }
      state.withLock { $0.started = false }
      throw error
    }
    let box = SessionsBox(sessions)
    let push = ProfilerThread(name: "app-prof-push") { [self] in pushLoop(box) }
    let upload = ProfilerThread(name: "app-prof-upload") { [self] in uploadLoop() }
    threads.withLock { $0 = [push, upload] }
    logger.info(
      "app-profiler pushes to Pyroscope",
      metadata: ["url": "\(configuration.serverURL)", "app": "\(configuration.applicationName)"])
  }

  /// Ends the current window, tries once more to upload what is queued
  /// (each window one attempt of up to a request timeout; the rest is dropped,
  /// counted, at the first failure), and stops. Safe to call more than once.
  public func stop() {
    guard state.withLock({ state in
      guard state.started, !state.stopping else { return false }
      state.stopping = true
      return true
    }) else { return }
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

  final class SessionsBox: @unchecked Sendable {
    let sessions: [ProfilingSession]
    init(_ sessions: [ProfilingSession]) { self.sessions = sessions }
  }

  private var isStopping: Bool { state.withLock { $0.stopping } }

  private static func realtimeNanoseconds() -> Int64 {
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

  /// Window boundaries on whole seconds of the realtime clock, one upload
  /// interval apart: each window's `until` is the next one's `from`.
  private func pushLoop(_ box: SessionsBox) {
    let interval = Int64(configuration.uploadInterval.components.seconds)
    var from = Self.realtimeNanoseconds() / 1_000_000_000
    var until = from + max(1, interval)
    while true {
      let stopping = sleep(until: until * 1_000_000_000)
      let windowEnd = stopping ? max(from + 1, Self.realtimeNanoseconds() / 1_000_000_000) : until
      for session in box.sessions {
        let profile: Profile
        do {
          profile = stopping ? try session.stopSynchronously() : try session.rotateSynchronously()
        } catch {
          continue
        }
        enqueue(encode(profile, mode: session.mode, from: from, until: windowEnd))
      }
      if stopping { return }
      from = until
      until += max(1, interval)
    }
  }

  func encode(_ profile: Profile, mode: Profile.Mode, from: Int64, until: Int64) -> Upload {
    var profile = profile
    if !configuration.droppedLabels.isEmpty {
      for thread in profile.threads.indices {
        for sample in profile.threads[thread].samples.indices {
          profile.threads[thread].samples[sample].labels =
            profile.threads[thread].samples[sample].labels.filter { !configuration.droppedLabels.contains($0.key) }
        }
      }
    }
    let suffix = mode == .alloc ? "alloc_space" : mode.rawValue
    let interval = configuration.cpuInterval.components
    let intervalNanoseconds = max(1, interval.seconds * 1_000_000_000 + interval.attoseconds / 1_000_000_000)
    let sampleRate = mode == .alloc ? 0 : Int(1_000_000_000 / intervalNanoseconds)
    return Upload(
      name: Self.seriesName(application: configuration.applicationName + "." + suffix, tags: configuration.tags),
      from: from, until: until, sampleRate: sampleRate, body: PprofEncoder().encode(profile))
  }

  /// `app.cpu{k=v,…}`: keys sanitized, sorted.
  static func seriesName(application: String, tags: [String: String]) -> String {
    guard !tags.isEmpty else { return application }
    let pairs = tags.sorted { $0.key < $1.key }.map { key, value in
      String(key.map { $0.isLetter || $0.isNumber || $0 == "_" ? $0 : "_" }) + "=" + value
    }
    return application + "{" + pairs.joined(separator: ",") + "}"
  }

  private func enqueue(_ upload: Upload) {
    let dropped = state.withLock { state -> Bool in
      var dropped = false
      if state.queue.count >= configuration.queueCapacity {
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
      logger.warning("app-profiler dropped a Pyroscope upload: queue full (\(configuration.queueCapacity))")
    }
  }

  enum Outcome {
    case uploaded
    case retry(String)
    case rejected(String)
  }

  /// Uploads the queue's head until it is accepted or refused; backs off
  /// while it fails. After stop: one more try of what is queued, then ends.
  private func uploadLoop() {
    var backoff: Double = 1
    let maxBackoff = Double(max(1, configuration.maxBackoff.components.seconds))
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
            "app-profiler uploads to Pyroscope again",
            metadata: ["failed_attempts": "\(failures)", "dropped_windows": "\(dropped)"])
        }
      case .rejected(let reason):
        let first = state.withLock { state -> Bool in
          if !state.queue.isEmpty { state.queue.removeFirst() }
          state.statistics.rejected += 1
          defer { state.failing = true }
          return !state.failing
        }
        if first { logger.error("Pyroscope refused an upload, dropped: \(reason)") }
      case .retry(let reason):
        let (first, pushDone) = state.withLock { state -> (Bool, Bool) in
          state.statistics.failedAttempts += 1
          state.streakFailures += 1
          defer { state.failing = true }
          return (!state.failing, state.pushDone)
        }
        if first {
          logger.error("app-profiler cannot upload to Pyroscope (retrying with backoff; logged once until it works): \(reason)")
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

  func send(_ upload: Upload) -> Outcome {
    let base = configuration.serverURL.hasSuffix("/") ? String(configuration.serverURL.dropLast()) : configuration.serverURL
    guard var components = URLComponents(string: base) else {
      return .rejected("invalid server URL \(configuration.serverURL)")
    }
    components.path += "/ingest"
    components.queryItems = [
      URLQueryItem(name: "name", value: upload.name),
      URLQueryItem(name: "from", value: String(upload.from)),
      URLQueryItem(name: "until", value: String(upload.until)),
      URLQueryItem(name: "format", value: "pprof"),
      URLQueryItem(name: "sampleRate", value: String(upload.sampleRate)),
      URLQueryItem(name: "spyName", value: "swift-app-profiler"),
    ]
    // `+` stays literal in URLComponents' query; Pyroscope decodes the name
    // as a form value, where it would be a space.
    let query = components.percentEncodedQuery?.replacingOccurrences(of: "+", with: "%2B")
    components.percentEncodedQuery = query
    guard let url = components.string else { return .rejected("invalid server URL \(configuration.serverURL)") }
    let boundary = "app-profiler-" + UUID().uuidString
    var body: [UInt8] = []
    body += Array("--\(boundary)\r\n".utf8)
    body += Array("Content-Disposition: form-data; name=\"profile\"; filename=\"profile.pprof\"\r\n".utf8)
    body += Array("Content-Type: application/octet-stream\r\n\r\n".utf8)
    body += upload.body
    body += Array("\r\n--\(boundary)--\r\n".utf8)
    do {
      var request = try HTTPClient.Request(url: url, method: .POST)
      request.headers.add(name: "Content-Type", value: "multipart/form-data; boundary=\(boundary)")
      request.headers.add(name: "User-Agent", value: "swift-app-profiler/\(AppProfilerVersion.current)")
      if let auth = configuration.basicAuth {
        request.headers.add(name: "Authorization", value: "Basic " + Data("\(auth.user):\(auth.password)".utf8).base64EncodedString())
      } else if let token = configuration.bearerToken {
        request.headers.add(name: "Authorization", value: "Bearer \(token)")
      }
      if let tenant = configuration.tenantID { request.headers.add(name: "X-Scope-OrgID", value: tenant) }
      request.body = .bytes(body)
      let timeout = TimeAmount.nanoseconds(
        Int64(configuration.requestTimeout.components.seconds) * 1_000_000_000
          + configuration.requestTimeout.components.attoseconds / 1_000_000_000)
      let response = try client.execute(request: request, deadline: .now() + timeout).wait()
      let status = Int(response.status.code)
      switch status {
      case 200..<300: return .uploaded
      case 429, 500...: return .retry("HTTP \(status)")
      default:
        let text = response.body.map { String(buffer: $0) } ?? ""
        return .rejected("HTTP \(status) \(text.prefix(200))")
      }
    } catch {
      return .retry("\(error)")
    }
  }
}
#endif
