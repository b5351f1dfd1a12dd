@_spi(Configuration) import AppProfiler

/// Configuration of the profile server. Every default says why it is what it
/// is; every field can also come from an environment variable (see
/// ``ProfileServerConfiguration/applyingEnvironment(_:)``).
public struct ProfileServerConfiguration: Sendable, Hashable {
  /// Whether `ProfileServer.start()` starts anything. Default true when set
  /// in code; `APP_PROFILER_ENABLED=0` lets an operator turn it off.
  public var enabled: Bool = true
  /// Where to listen. Default: a Unix socket in ``directory``, reachable only
  /// by this user (a profile leaks code structure, and a profile request costs
  /// CPU: the back door must not be open to others).
  public var bindAddress: BindAddress = .unixDomainSocket()
  /// Directory for the socket and the discovery record. Default
  /// `$APP_PROFILER_DIR`, else `$TMPDIR/app_profiler`, else `/tmp/app_profiler`.
  public var directory: String? = nil
  /// Longest profile a request may ask for. Default 300 s: long enough for
  /// any investigation, short enough that a forgotten request ends.
  public var maxDuration: Duration = .seconds(300)
  /// Web origins whose pages may use the server (CORS): their requests are
  /// served with their origin echoed in `Access-Control-Allow-Origin`; a
  /// request from any other page is refused (403) before it starts work. The
  /// server's own pages are always allowed. Default speedscope's origin, so
  /// `https://www.speedscope.app/#profileURL=…` loads a profile from the TCP
  /// transport: any other page open in the developer's browser could
  /// otherwise start profiles (a DoS vector) and read them (function, thread
  /// and route names, trace ids). `["*"]` allows every origin (only when
  /// written out); `[]` allows only the server's own pages. See
  /// docs/http-api.md, "Browsers".
  public var corsOrigins: [String] = ["https://www.speedscope.app"]
  /// Host names, besides `localhost`, `127.0.0.1`, `[::1]` and the bind
  /// address, that the TCP transport answers to (a name in `/etc/hosts`, a
  /// proxy's name). Default none: a request naming another host is refused
  /// (421), which defeats DNS rebinding. `["*"]` turns the check off.
  public var allowedHosts: [String] = []
  /// The allowed origins as one value (`corsOrigins` joined by ", "); nil
  /// when none. Setting it splits a list on commas and spaces.
  @available(*, deprecated, renamed: "corsOrigins")
  public var corsOrigin: String? {
    get { corsOrigins.isEmpty ? nil : corsOrigins.joined(separator: ", ") }
    set { corsOrigins = newValue.map(EnvironmentReader.items) ?? [] }
  }
  /// Bearer token required in `Authorization: Bearer <token>`; nil: none.
  public var bearerToken: String? = nil
  /// Allow a non-loopback bind address. Also requires ``bearerToken``.
  public var allowRemoteAccess: Bool = false
  /// Connections served at once; more are closed at accept. Default 16: a
  /// profile needs one, a dashboard a few; the cap keeps the back door from
  /// being used to exhaust the process.
  public var maxConnections: Int = 16
  /// A request head must arrive within this time of connecting, else 408 and
  /// close (slow clients cannot hold connections). Default 10 s.
  public var requestHeadTimeout: Duration = .seconds(10)
  /// Largest request head (request line + headers). Default 16 KiB; larger
  /// heads get 431 (414 for a longer request line alone).
  public var maxRequestHeadBytes: Int = 16 * 1024

  /// How profiles are sampled (signal, engine, buffer sizes, and the
  /// allocation sampling rate `sessionOptions.allocationSamplingRate`).
  public var sessionOptions: SessionOptions = SessionOptions()
  /// Sample allocations from server start at `sessionOptions.allocationSamplingRate`,
  /// so `/debug/pprof/allocs` returns cumulative totals (what Pyroscope/Alloy
  /// and Parca scrape and diff). Default false: every allocation then passes
  /// through a wrapper for the life of the process (see BENCHMARKS.md for
  /// the cost), which nobody should pay without asking.
  public var continuousAllocationSampling: Bool = false
  /// Measure contended pthread lock waits from server start at
  /// `sessionOptions.lockSamplingRate`, so `/debug/pprof/block` and `/mutex`
  /// return cumulative totals (what scrapers ask for). Default false: lock
  /// and unlock calls then pass through wrappers for the life of the process
  /// (docs/locks.md for the cost).
  public var continuousLockSampling: Bool = false
  /// Seconds the flight recorder keeps (``AppProfiler/FlightRecorder``, 19 Hz
  /// cpu and wall), started with the server: `/debug/pprof/flight` answers
  /// with the last of them at once. Default nil (off).
  public var flightRecorderSeconds: Int? = nil
  /// Per-request profiling by the framework middlewares (off by default),
  /// and the store whose files `/profiles/<name>` serves.
  public var requestProfiling: RequestProfilingConfiguration = RequestProfilingConfiguration()

  /// What a failed start does. Default ``FailureMode/log``: one error line
  /// naming the problem and its fix, and the app runs on without the server —
  /// a profiler must never be the reason a service does not start.
  public var failureMode: FailureMode = .log

  /// What `ProfileServer.start()` does when it cannot listen (a bad
  /// directory, socket path or `APP_PROFILER_*` value, an address in use).
  public struct FailureMode: Sendable, Hashable, CustomStringConvertible {
    enum Kind: Sendable, Hashable { case log, `throw` }
    let kind: Kind
    /// Log one error line (problem and fix) and continue with the server off.
    public static let log = FailureMode(kind: .log)
    /// Throw the ``ProfileServerError`` (for apps that want to stop on it).
    public static let `throw` = FailureMode(kind: .throw)
    public var description: String { kind == .log ? "log" : "throw" }
  }

  public init() {}

  /// The directory the server uses: ``directory`` or the default, without
  /// trailing slashes (`link/` would make lstat follow the link).
  func resolvedDirectory(environment: [String: String]) -> String {
    var path = directory.flatMap { $0.isEmpty ? nil : $0 } ?? Self.defaultDirectory(environment: environment)
    while path.count > 1 && path.hasSuffix("/") { path.removeLast() }
    return path
  }

  /// Where servers put sockets and discovery records unless told otherwise:
  /// `$APP_PROFILER_DIR`, else `$TMPDIR/app_profiler`, else `/tmp/app_profiler`.
  public static func defaultDirectory(environment: [String: String]) -> String {
    if let fromEnvironment = environment["APP_PROFILER_DIR"], !fromEnvironment.isEmpty { return fromEnvironment }
    var temporary = environment["TMPDIR"] ?? "/tmp"
    if temporary.isEmpty { temporary = "/tmp" }
    while temporary.count > 1 && temporary.hasSuffix("/") { temporary.removeLast() }
    return temporary + "/app_profiler"
  }
}
