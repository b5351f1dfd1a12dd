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
import AppProfilerExport

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
public final class PyroscopeExporter: PushExporter {
  /// Counters since start.
  public typealias Statistics = ProfilePusher.Statistics

  public let configuration: PyroscopeConfiguration
  private let logger: Logger
  private let client: HTTPClient
  private let pusher: ProfilePusher

  public init(
    configuration: PyroscopeConfiguration, logger: Logger = Logger(label: "app-profiler.pyroscope"),
    httpClient: HTTPClient = .shared
  ) {
    self.configuration = configuration
    self.logger = logger
    self.client = httpClient
    self.pusher = ProfilePusher(
      destination: "Pyroscope", identity: "pyroscope \(configuration.serverURL) \(configuration.applicationName)",
      interval: configuration.uploadInterval, queueCapacity: configuration.queueCapacity,
      maxBackoff: configuration.maxBackoff, logger: logger,
      encode: { windows, from, until in
        windows.map { Self.encode($0.profile, mode: $0.mode, from: from, until: until, configuration: configuration) }
      },
      send: { upload in Self.send(upload, configuration: configuration, client: httpClient) })
  }

  /// An exporter configured by `APP_PROFILER_PYROSCOPE_*`
  /// (``PyroscopeConfiguration/fromEnvironment(_:)``), or nil when
  /// `APP_PROFILER_PYROSCOPE_URL` is unset — or invalid: then one error line
  /// is logged and the app runs on without it.
  public static func fromEnvironment(
    _ environment: [String: String] = ProcessInfo.processInfo.environment,
    logger: Logger = Logger(label: "app-profiler.pyroscope")
  ) -> PyroscopeExporter? {
    fromEnvironment(
      reading: { try PyroscopeConfiguration.fromEnvironment(environment) }, logger: logger, failure: "app-profiler does not push to Pyroscope",
      make: { PyroscopeExporter(configuration: $0, logger: logger) })
  }

  public var statistics: Statistics { pusher.statistics }

  public func start() throws {
    let started = try pusher.start { [configuration] in
      // A profile every interval: names only (no continuous DWARF work).
      var options = configuration.sessionOptions
      options.sourceLocations = false
      return try ProfilePusher.startSessions(
        configuration.allocations ? [.cpu, .alloc] : [.cpu], interval: configuration.cpuInterval, options: options)
    }
    if started == .duplicate {
      logger.info(
        "app-profiler already pushes to Pyroscope under this name from this process; this exporter stays idle",
        metadata: ["url": "\(configuration.serverURL)", "app": "\(configuration.applicationName)"])
    }
    guard started == .pushing else { return }
    logger.info(
      "app-profiler pushes to Pyroscope",
      metadata: ["url": "\(configuration.serverURL)", "app": "\(configuration.applicationName)"])
  }

  /// Ends the current window, tries once more to upload what is queued
  /// (each window one attempt of up to a request timeout; the rest is dropped,
  /// counted, at the first failure), and stops. Safe to call more than once.
  public func stop() { pusher.stop() }

  static func encode(
    _ profile: Profile, mode: Profile.Mode, from: Int64, until: Int64, configuration: PyroscopeConfiguration
  ) -> ProfilePusher.Upload {
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
    return ProfilePusher.Upload(
      body: PprofEncoder().encode(profile), from: from, until: until,
      info: [
        "name": seriesName(application: configuration.applicationName + "." + suffix, tags: configuration.tags),
        "sampleRate": String(sampleRate),
      ])
  }

  /// `app.cpu{k=v,…}`: keys sanitized, sorted.
  static func seriesName(application: String, tags: [String: String]) -> String {
    guard !tags.isEmpty else { return application }
    let pairs = tags.sorted { $0.key < $1.key }.map { key, value in
      String(key.map { $0.isLetter || $0.isNumber || $0 == "_" ? $0 : "_" }) + "=" + value
    }
    return application + "{" + pairs.joined(separator: ",") + "}"
  }

  static func send(
    _ upload: ProfilePusher.Upload, configuration: PyroscopeConfiguration, client: HTTPClient
  ) -> ProfilePusher.Outcome {
    let base = configuration.serverURL.hasSuffix("/") ? String(configuration.serverURL.dropLast()) : configuration.serverURL
    guard var components = URLComponents(string: base) else {
      return .rejected("invalid server URL \(configuration.serverURL)")
    }
    components.path += "/ingest"
    components.queryItems = [
      URLQueryItem(name: "name", value: upload.info["name"]),
      URLQueryItem(name: "from", value: String(upload.from)),
      URLQueryItem(name: "until", value: String(upload.until)),
      URLQueryItem(name: "format", value: "pprof"),
      URLQueryItem(name: "sampleRate", value: upload.info["sampleRate"]),
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
    var headers = [("Content-Type", "multipart/form-data; boundary=\(boundary)")]
    if let auth = configuration.basicAuth {
      headers.append(("Authorization", "Basic " + Data("\(auth.user):\(auth.password)".utf8).base64EncodedString()))
    } else if let token = configuration.bearerToken {
      headers.append(("Authorization", "Bearer \(token)"))
    }
    if let tenant = configuration.tenantID { headers.append(("X-Scope-OrgID", tenant)) }
    return ExportHTTP.post(url: url, headers: headers, body: body, timeout: configuration.requestTimeout, client: client)
  }
}

#endif
