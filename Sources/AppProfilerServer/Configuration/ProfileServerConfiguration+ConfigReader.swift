// With the `Configuration` trait (on by default): settings from an
// apple/swift-configuration `ConfigReader`.
#if Configuration
import Configuration
import Foundation
import Logging

extension ProfileServerConfiguration {
  /// The server's settings as swift-configuration keys: each `APP_PROFILER_*`
  /// variable is the key of the same name in lower camel case, relative to
  /// the reader (`APP_PROFILER_MAX_DURATION` is `maxDuration`). Scope the
  /// reader to `appProfiler` and `EnvironmentVariablesProvider` maps every key
  /// back to its variable's name.
  static let configKeys: [(variable: String, key: String, type: ConfigKeyType)] = [
    ("APP_PROFILER_ENABLED", "enabled", .bool),
    ("APP_PROFILER_TRANSPORT", "transport", .string),
    ("APP_PROFILER_SOCKET", "socket", .string),
    ("APP_PROFILER_DIR", "dir", .string),
    ("APP_PROFILER_HOST", "host", .string),
    ("APP_PROFILER_PORT", "port", .int),
    ("APP_PROFILER_TOKEN", "token", .secret),
    ("APP_PROFILER_ALLOW_REMOTE", "allowRemote", .bool),
    ("APP_PROFILER_MAX_DURATION", "maxDuration", .int),
    ("APP_PROFILER_CORS_ORIGIN", "corsOrigin", .string),
    ("APP_PROFILER_ALLOWED_HOSTS", "allowedHosts", .string),
    ("APP_PROFILER_MAX_CONNECTIONS", "maxConnections", .int),
    ("APP_PROFILER_SIGNAL", "signal", .int),
    ("APP_PROFILER_CPU_ENGINE", "cpuEngine", .string),
    ("APP_PROFILER_ALLOC_ALWAYS_ON", "allocAlwaysOn", .bool),
    ("APP_PROFILER_HEAP", "heap", .bool),
    ("APP_PROFILER_ALLOC_RATE", "allocRate", .int),
    ("APP_PROFILER_LOCKS", "locks", .bool),
    ("APP_PROFILER_LOCK_RATE_NS", "lockRateNs", .int),
    ("APP_PROFILER_REQUEST_PROFILING", "requestProfiling", .bool),
    ("APP_PROFILER_PROFILE_STORE", "profileStore", .string),
    ("APP_PROFILER_TRACE_LABELS", "traceLabels", .bool),
    ("APP_PROFILER_FLIGHT_RECORDER", "flightRecorder", .int),
    ("APP_PROFILER_SLOW_REQUEST_MS", "slowRequestMs", .int),
  ]

  enum ConfigKeyType { case bool, int, string, secret }

  /// The values `config` holds for the server's keys, by variable name (the
  /// form ``applyingEnvironment(_:)`` validates). A value of the wrong type
  /// (`port: "eighty"`) is passed on as text, so that validation names it.
  static func settings(from config: ConfigReader) -> [String: String] {
    var settings: [String: String] = [:]
    for (variable, key, type) in configKeys {
      let key = ConfigKey(key)
      let typed: String?
      switch type {
      case .bool: typed = config.bool(forKey: key).map { $0 ? "1" : "0" }
      case .int: typed = config.int(forKey: key).map(String.init)
      case .string: typed = config.string(forKey: key)
      case .secret: typed = config.string(forKey: key, isSecret: true)
      }
      if let value = typed ?? config.string(forKey: key, isSecret: type == .secret) {
        settings[variable] = value
      }
    }
    return settings
  }

  /// This configuration with the settings `config` holds applied (keys:
  /// ``configKeys``; ``ProfileServer/init(configuration:config:environment:logger:)``
  /// documents them). Throws ``EnvironmentError`` naming the variable of a
  /// key whose value is invalid.
  public func applying(config: ConfigReader) throws -> ProfileServerConfiguration {
    try applyingEnvironment(Self.settings(from: config))
  }
}

extension ProfileServer {
  /// A server whose settings come from a swift-configuration reader, so an app
  /// that configures everything through one needs no environment variables.
  ///
  /// ```swift
  /// let config = ConfigReader(providers: [EnvironmentVariablesProvider(), try await JSONProvider(…)])
  /// let server = ProfileServer(config: config.scoped(to: "appProfiler"))
  /// ```
  ///
  /// Keys, relative to `config` (each is the `APP_PROFILER_*` variable of the
  /// same name; the README lists their meaning): `enabled`, `transport`,
  /// `socket`, `dir`, `host`, `port`, `token` (read as a secret),
  /// `allowRemote`, `maxDuration`, `corsOrigin`, `allowedHosts`, `maxConnections`, `signal`,
  /// `cpuEngine`, `allocAlwaysOn`, `allocRate`, `locks`, `lockRateNs`, `requestProfiling`,
  /// `profileStore`, `traceLabels`, `flightRecorder`, `slowRequestMs`.
  ///
  /// Precedence: `configuration` (code) < `config` < `APP_PROFILER_*`
  /// variables, so an operator can still turn the server off or move it
  /// without a rebuild. Invalid values are handled as invalid variables are:
  /// starting logs one line naming the variable and the app runs on (or
  /// throws, with ``ProfileServerConfiguration/failureMode`` `.throw`).
  public convenience init(
    configuration: ProfileServerConfiguration = ProfileServerConfiguration(),
    config: ConfigReader,
    environment: [String: String] = ProcessInfo.processInfo.environment,
    logger: Logger = Logger(label: "app-profiler")
  ) {
    let settings = ProfileServerConfiguration.settings(from: config).merging(environment) { _, variable in variable }
    self.init(configuration: configuration, environment: settings, logger: logger)
  }
}
#endif
