@_spi(Configuration) import AppProfiler

/// Environment variables, so an operator can turn the server on or move it
/// without a rebuild. Listed in the README; each overrides the value set in code.
///
/// | variable | meaning |
/// |---|---|
/// | `APP_PROFILER_ENABLED` | `1`/`true` or `0`/`false` |
/// | `APP_PROFILER_TRANSPORT` | `unix` or `tcp` |
/// | `APP_PROFILER_SOCKET` | socket path (unix transport) |
/// | `APP_PROFILER_DIR` | directory of sockets and discovery records |
/// | `APP_PROFILER_HOST` | TCP host (default 127.0.0.1) |
/// | `APP_PROFILER_PORT` | TCP port (default 0: ephemeral) |
/// | `APP_PROFILER_TOKEN` | bearer token |
/// | `APP_PROFILER_ALLOW_REMOTE` | `1` to allow a non-loopback host (needs a token) |
/// | `APP_PROFILER_MAX_DURATION` | longest profile, seconds |
/// | `APP_PROFILER_CORS_ORIGIN` | origins whose pages may use the server (list; `*` any; empty: own pages only) |
/// | `APP_PROFILER_ALLOWED_HOSTS` | host names the TCP transport answers to besides loopback (list; `*` any) |
/// | `APP_PROFILER_MAX_CONNECTIONS` | connections served at once |
/// | `APP_PROFILER_SIGNAL` | signal number used for sampling (default 27, SIGPROF) |
/// | `APP_PROFILER_CPU_ENGINE` | `auto`, `perf` (perf events only), `timer` (POSIX CPU timers) or `ticker` (the CPU ticker) |
/// | `APP_PROFILER_ALLOC_ALWAYS_ON` | `1` samples allocations from start-up (`/debug/pprof/allocs`) |
/// | `APP_PROFILER_HEAP` | `1`: the same, named for the live heap it tracks (`/debug/pprof/heap`) |
/// | `APP_PROFILER_ALLOC_RATE` | mean bytes between allocation samples (default 524288) |
/// | `APP_PROFILER_REQUEST_PROFILING` | `1` lets the middlewares profile requests that ask (`?profile=cpu`) |
/// | `APP_PROFILER_PROFILE_STORE` | directory for per-request profiles (served at `/profiles/<name>`) |
/// | `APP_PROFILER_TRACE_LABELS` | `1`: the middlewares label requests with `trace_id`/`span_id` of their span |
/// | `APP_PROFILER_FLIGHT_RECORDER` | seconds the flight recorder keeps (1 … 3600; 0: off) |
/// | `APP_PROFILER_SLOW_REQUEST_MS` | requests slower than this get the flight recorder's profile stored |
extension ProfileServerConfiguration {
  /// A configuration error in the environment, naming the variable (the
  /// package's one ``AppProfiler/EnvironmentError``).
  public typealias EnvironmentError = AppProfiler.EnvironmentError

  /// This configuration with the `APP_PROFILER_*` variables applied.
  public func applyingEnvironment(_ environment: [String: String]) throws -> ProfileServerConfiguration {
    var result = self
    let reader = EnvironmentReader(environment)
    func bool(_ name: String) throws -> Bool? { try reader.bool(name) }
    func int(_ name: String, _ range: ClosedRange<Int>) throws -> Int? { try reader.int(name, range) }
    if let enabled = try bool("APP_PROFILER_ENABLED") { result.enabled = enabled }
    if let directory = reader.nonEmpty("APP_PROFILER_DIR") { result.directory = directory }
    let transport = try reader.choice("APP_PROFILER_TRANSPORT", ["unix": "unix", "tcp": "tcp"])
    switch transport {
    case "unix": result.bindAddress = .unixDomainSocket(path: reader.string("APP_PROFILER_SOCKET"))
    case "tcp": result.bindAddress = .hostname("127.0.0.1", port: 0)
    default: if let socket = reader.nonEmpty("APP_PROFILER_SOCKET") { result.bindAddress = .unixDomainSocket(path: socket) }
    }
    let host = reader.string("APP_PROFILER_HOST")
    let port = try int("APP_PROFILER_PORT", 0...65535)
    if host != nil || port != nil {
      var currentHost = "127.0.0.1"
      var currentPort = 0
      if case .hostname(let h, let p) = result.bindAddress.kind {
        currentHost = h
        currentPort = p
      } else if transport == "unix" {
        throw EnvironmentError(
          variable: host != nil ? "APP_PROFILER_HOST" : "APP_PROFILER_PORT", value: host ?? String(port!),
          allowed: "only with APP_PROFILER_TRANSPORT=tcp")
      }
      result.bindAddress = .hostname(host ?? currentHost, port: port ?? currentPort)
    }
    if let token = reader.string("APP_PROFILER_TOKEN") { result.bearerToken = token.isEmpty ? nil : token }
    if let remote = try bool("APP_PROFILER_ALLOW_REMOTE") { result.allowRemoteAccess = remote }
    if let seconds = try int("APP_PROFILER_MAX_DURATION", 1...86_400) { result.maxDuration = .seconds(seconds) }
    if let origins = reader.string("APP_PROFILER_CORS_ORIGIN") {
      result.corsOrigins = EnvironmentReader.items(origins)
      for origin in result.corsOrigins where !Self.isOrigin(origin) {
        throw EnvironmentError(
          variable: "APP_PROFILER_CORS_ORIGIN", value: origins,
          allowed: "a list of origins (scheme://host[:port], no path), * for any, or empty")
      }
    }
    if let hosts = reader.string("APP_PROFILER_ALLOWED_HOSTS") {
      result.allowedHosts = EnvironmentReader.items(hosts)
      for host in result.allowedHosts where host != "*" && BrowserPolicy.hostName(fromHostHeader: host) == nil {
        throw EnvironmentError(
          variable: "APP_PROFILER_ALLOWED_HOSTS", value: hosts, allowed: "a list of host names (name or [v6 address]), * for any, or empty")
      }
    }
    if let connections = try int("APP_PROFILER_MAX_CONNECTIONS", 1...1024) { result.maxConnections = connections }
    if let signal = try int("APP_PROFILER_SIGNAL", 1...64) { result.sessionOptions.signal = Int32(signal) }
    let engines: KeyValuePairs<String, SessionOptions.CPUEngine> = [
      "auto": .automatic, "perf": .perfEvents, "timer": .posixTimers, "ticker": .cpuTicker,
    ]
    if let engine = try reader.choice("APP_PROFILER_CPU_ENGINE", engines), engine != .automatic {
      result.sessionOptions.cpuEngine = engine
    }
    if let always = try bool("APP_PROFILER_ALLOC_ALWAYS_ON") { result.continuousAllocationSampling = always }
    if let heap = try bool("APP_PROFILER_HEAP"), heap { result.continuousAllocationSampling = true }
    if let locks = try bool("APP_PROFILER_LOCKS") { result.continuousLockSampling = locks }
    if let rate = try int("APP_PROFILER_LOCK_RATE_NS", 1...1_000_000_000) {
      result.sessionOptions.lockSamplingRate = .nanoseconds(rate)
    }
    if let requests = try bool("APP_PROFILER_REQUEST_PROFILING") { result.requestProfiling.enabled = requests }
    if let store = reader.string("APP_PROFILER_PROFILE_STORE") { result.requestProfiling.store = store.isEmpty ? nil : store }
    if let trace = try bool("APP_PROFILER_TRACE_LABELS") { result.requestProfiling.traceLabels = trace }
    if let seconds = try int("APP_PROFILER_FLIGHT_RECORDER", 0...3600) { result.flightRecorderSeconds = seconds == 0 ? nil : seconds }
    if let milliseconds = try int("APP_PROFILER_SLOW_REQUEST_MS", 0...3_600_000) {
      result.requestProfiling.slowRequestThreshold = milliseconds == 0 ? nil : .milliseconds(milliseconds)
    }
    if let rate = try int("APP_PROFILER_ALLOC_RATE", SessionOptions.allowedAllocationSamplingRates) {
      result.sessionOptions.allocationSamplingRate = rate
    }
    return result
  }

  /// `*`, `null`, or `scheme://host[:port]` without a path.
  static func isOrigin(_ text: String) -> Bool {
    if text == "*" || text == "null" { return true }
    guard let separator = text.range(of: "://") else { return false }
    let scheme = text[..<separator.lowerBound]
    var authority = text[separator.upperBound...]
    while authority.hasSuffix("/") { authority = authority.dropLast() }
    return !scheme.isEmpty && scheme.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "+" || $0 == "-" || $0 == "." })
      && !authority.contains("/") && BrowserPolicy.hostName(fromHostHeader: String(authority)) != nil
  }
}
