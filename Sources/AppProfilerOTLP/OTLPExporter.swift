// Built only with the `OTLP` trait: `.package(url: …, traits: [.defaults, "OTLP"])`.
#if OTLP
@_spi(Support) @_spi(Configuration) import AppProfiler
import AppProfilerExport
import AsyncHTTPClient
import Foundation
import Logging
import ServiceLifecycle

/// Where and how ``OTLPExporter`` pushes: OpenTelemetry's own settings.
public struct OTLPConfiguration: Sendable {
  /// The full URL requests go to, e.g. `http://collector:4318/v1development/profiles`.
  public var endpoint: String
  /// Headers of every request (`OTEL_EXPORTER_OTLP_HEADERS`), e.g. an API key.
  public var headers: [String: String] = [:]
  /// Resource attributes: `service.name`, `process.pid`, `host.name`,
  /// `process.runtime.*`, and those of `OTEL_RESOURCE_ATTRIBUTES`.
  public var resourceAttributes: [String: String] = [:]
  /// One request per interval, consecutive intervals tiling time. Default 15 s.
  public var interval: Duration = .seconds(15)
  /// cpu sampling interval. Default 10 ms (100 Hz, docs/sampling.md).
  public var cpuInterval: Duration = .milliseconds(10)
  /// Also allocation profiles of each interval (a wrapper on every
  /// allocation: BENCHMARKS.md, alloc-overhead).
  public var allocations = false
  /// Also wall-clock profiles of each interval.
  public var wall = false
  public var queueCapacity = 8
  public var requestTimeout: Duration = .seconds(10)
  public var maxBackoff: Duration = .seconds(60)
  /// Sampler options of the sessions.
  public var sessionOptions = SessionOptions()

  public init(endpoint: String, serviceName: String) {
    self.endpoint = endpoint
    self.resourceAttributes = Self.processAttributes()
    self.resourceAttributes["service.name"] = serviceName
  }

  /// `process.pid`, `host.name`, `process.executable.name`, `process.runtime.*`.
  static func processAttributes() -> [String: String] {
    var host = [CChar](repeating: 0, count: 256)
    gethostname(&host, host.count - 1)
    return [
      "process.pid": String(getpid()),
      "host.name": String(decoding: host.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self),
      "process.executable.name": URL(fileURLWithPath: CommandLine.arguments.first ?? "").lastPathComponent,
      "process.runtime.name": "swift",
      "process.runtime.version": Self.swiftVersion,
      "process.runtime.description": "Swift \(Self.swiftVersion) on Linux",
      "telemetry.sdk.name": "swift-app-profiler",
      "telemetry.sdk.language": "swift",
      "telemetry.sdk.version": AppProfilerVersion.current,
    ]
  }

  static var swiftVersion: String {
    #if swift(>=6.3)
    "6.3"
    #elseif swift(>=6.2)
    "6.2"
    #elseif swift(>=6.1)
    "6.1"
    #else
    "6.0"
    #endif
  }

  /// An invalid variable (the package's one ``AppProfiler/EnvironmentError``).
  public typealias EnvironmentError = AppProfiler.EnvironmentError

  /// From OpenTelemetry's variables; nil when neither endpoint variable is set.
  ///
  /// | variable | meaning |
  /// |---|---|
  /// | `OTEL_EXPORTER_OTLP_PROFILES_ENDPOINT` | the URL, used as is |
  /// | `OTEL_EXPORTER_OTLP_ENDPOINT` | base URL; `/v1development/profiles` is appended |
  /// | `OTEL_EXPORTER_OTLP_PROFILES_HEADERS`, `OTEL_EXPORTER_OTLP_HEADERS` | `key=value,…` (values percent-decoded) |
  /// | `OTEL_EXPORTER_OTLP_PROFILES_TIMEOUT`, `OTEL_EXPORTER_OTLP_TIMEOUT` | request timeout, ms (default 10000) |
  /// | `OTEL_SERVICE_NAME` | `service.name` (else `OTEL_RESOURCE_ATTRIBUTES`' one, else `unknown_service:<executable>`) |
  /// | `OTEL_RESOURCE_ATTRIBUTES` | `key=value,…` resource attributes |
  /// | `APP_PROFILER_OTLP_INTERVAL` | seconds per request (default 15) |
  /// | `APP_PROFILER_OTLP_ALLOCATIONS`, `APP_PROFILER_OTLP_WALL` | `1`: also alloc, wall profiles |
  public static func fromEnvironment(
    _ environment: [String: String] = ProcessInfo.processInfo.environment
  ) throws -> OTLPConfiguration? {
    let reader = EnvironmentReader(environment)
    let endpoint: String
    if let url = reader.nonEmpty("OTEL_EXPORTER_OTLP_PROFILES_ENDPOINT") {
      endpoint = try Self.checkedURL(url, variable: "OTEL_EXPORTER_OTLP_PROFILES_ENDPOINT")
    } else if let base = reader.nonEmpty("OTEL_EXPORTER_OTLP_ENDPOINT") {
      let url = try Self.checkedURL(base, variable: "OTEL_EXPORTER_OTLP_ENDPOINT")
      endpoint = (url.hasSuffix("/") ? String(url.dropLast()) : url) + "/v1development/profiles"
    } else {
      return nil
    }
    var resource: [String: String] = [:]
    if let text = reader.nonEmpty("OTEL_RESOURCE_ATTRIBUTES") {
      resource = try Self.pairs(text, variable: "OTEL_RESOURCE_ATTRIBUTES")
    }
    let executable = URL(fileURLWithPath: CommandLine.arguments.first ?? "swift-app").lastPathComponent
    let service = reader.nonEmpty("OTEL_SERVICE_NAME") ?? resource["service.name"] ?? "unknown_service:\(executable)"
    var configuration = OTLPConfiguration(endpoint: endpoint, serviceName: service)
    for (key, value) in resource where key != "service.name" { configuration.resourceAttributes[key] = value }
    for variable in ["OTEL_EXPORTER_OTLP_PROFILES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS"] {
      guard let text = reader.nonEmpty(variable) else { continue }
      configuration.headers = try Self.pairs(text, variable: variable)
      break
    }
    for variable in ["OTEL_EXPORTER_OTLP_PROFILES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"] {
      guard let milliseconds = try reader.int(variable, 1...600_000, unit: "ms") else { continue }
      configuration.requestTimeout = .milliseconds(milliseconds)
      break
    }
    if let seconds = try reader.int("APP_PROFILER_OTLP_INTERVAL", 1...3600, unit: "seconds") {
      configuration.interval = .seconds(seconds)
    }
    if let allocations = try reader.bool("APP_PROFILER_OTLP_ALLOCATIONS") { configuration.allocations = allocations }
    if let wall = try reader.bool("APP_PROFILER_OTLP_WALL") { configuration.wall = wall }
    return configuration
  }

  static func checkedURL(_ text: String, variable: String) throws -> String {
    guard let url = URL(string: text), ["http", "https"].contains(url.scheme ?? ""), url.host != nil else {
      throw EnvironmentError(variable: variable, value: text, allowed: "an http:// or https:// URL")
    }
    return text
  }

  /// `key=value,key=value` (W3C baggage style, as OpenTelemetry's variables): values percent-decoded.
  static func pairs(_ text: String, variable: String) throws -> [String: String] {
    var result: [String: String] = [:]
    for pair in text.split(separator: ",") {
      let parts = pair.split(separator: "=", maxSplits: 1)
      let key = parts.first.map { String($0).trimmingCharacters(in: .whitespaces) } ?? ""
      guard parts.count == 2, !key.isEmpty else {
        throw EnvironmentError(variable: variable, value: text, allowed: "key=value[,key=value…]")
      }
      let value = String(parts[1]).trimmingCharacters(in: .whitespaces)
      result[key] = value.removingPercentEncoding ?? value
    }
    return result
  }
}

/// Pushes a profile of every interval to an OpenTelemetry collector (or any
/// OTLP profiles receiver: Grafana Pyroscope, Elastic) as an OTLP/HTTP
/// `ExportProfilesServiceRequest`, protobuf, gzipped
/// (``AppProfilerFormats/OTLPProfilesEncoder``): the cpu profile of the
/// interval (and alloc, wall when asked), names with file:line, labels as
/// attributes, the middlewares' trace labels as links to their spans.
///
/// ```swift
/// let exporter = OTLPExporter.fromEnvironment()   // OTEL_EXPORTER_OTLP_ENDPOINT set
/// try exporter?.start()
/// ```
///
/// Like ``PyroscopeExporter``'s: consecutive windows tile time, it reads
/// the process's running samplers like any profile, runs on threads of its
/// own, queues a bounded number of requests, retries with backoff and
/// jitter, and logs one line per failure streak.
public final class OTLPExporter: PushExporter {
  public typealias Statistics = ProfilePusher.Statistics

  public let configuration: OTLPConfiguration
  private let logger: Logger
  private let pusher: ProfilePusher

  public init(
    configuration: OTLPConfiguration, logger: Logger = Logger(label: "app-profiler.otlp"), httpClient: HTTPClient = .shared
  ) {
    self.configuration = configuration
    self.logger = logger
    let encoder = OTLPProfilesEncoder(
      resourceAttributes: configuration.resourceAttributes.sorted { $0.key < $1.key }.map { key, value in
        (key, key == "process.pid" ? Int64(value).map(OTLPProfilesEncoder.Value.int) ?? .string(value) : .string(value))
      })
    var headers = [("Content-Type", "application/x-protobuf"), ("Content-Encoding", "gzip")]
    headers += configuration.headers.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    self.pusher = ProfilePusher(
      destination: "the OTLP endpoint", identity: "otlp \(configuration.endpoint)", interval: configuration.interval, queueCapacity: configuration.queueCapacity,
      maxBackoff: configuration.maxBackoff, logger: logger,
      encode: { windows, from, until in
        guard !windows.isEmpty else { return [] }
        let body = Gzip.compress(encoder.encode(windows.map(\.profile)))
        return [ProfilePusher.Upload(body: body, from: from, until: until)]
      },
      send: { [headers] upload in
        ExportHTTP.post(
          url: configuration.endpoint, headers: headers, body: upload.body, timeout: configuration.requestTimeout,
          client: httpClient)
      })
  }

  /// An exporter configured by OpenTelemetry's variables
  /// (``OTLPConfiguration/fromEnvironment(_:)``), or nil when no endpoint
  /// is set — or a variable is invalid: then one error line is logged and
  /// the app runs on without it.
  public static func fromEnvironment(
    _ environment: [String: String] = ProcessInfo.processInfo.environment,
    logger: Logger = Logger(label: "app-profiler.otlp")
  ) -> OTLPExporter? {
    fromEnvironment(
      reading: { try OTLPConfiguration.fromEnvironment(environment) }, logger: logger, failure: "app-profiler does not export OTLP profiles",
      make: { OTLPExporter(configuration: $0, logger: logger) })
  }

  public var statistics: Statistics { pusher.statistics }

  public func start() throws {
    let started = try pusher.start { [configuration] in
      var modes: [Profile.Mode] = [.cpu]
      if configuration.wall { modes.append(.wall) }
      if configuration.allocations { modes.append(.alloc) }
      return try ProfilePusher.startSessions(modes, interval: configuration.cpuInterval, options: configuration.sessionOptions)
    }
    if started == .duplicate {
      logger.info(
        "app-profiler already exports OTLP profiles to this endpoint from this process; this exporter stays idle",
        metadata: ["endpoint": "\(configuration.endpoint)"])
    }
    guard started == .pushing else { return }
    logger.info(
      "app-profiler exports OTLP profiles",
      metadata: ["endpoint": "\(configuration.endpoint)", "service": "\(configuration.resourceAttributes["service.name"] ?? "")"])
  }

  /// Ends the current window, sends what is queued once more, and stops.
  /// Safe to call more than once.
  public func stop() { pusher.stop() }
}
#endif
