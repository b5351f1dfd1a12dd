import AppProfiler
import NIOHTTP1

/// What a route asks the connection handler to do.
enum RouteAction: Sendable {
  /// Answer now, on the event loop (cheap: index pages, errors, stored files).
  case respond(HTTPResponse)
  /// Slow work (a profile, a thread dump): on a thread of its own, never the
  /// cooperative pool; `RecordingCancellation` fires when the client leaves.
  case run(@Sendable (ProfileCoordinator, RecordingCancellation) -> HTTPResponse)
}

/// A request as a route sees it: its query, method and body.
struct RouteRequest {
  var query: HTTPQuery
  var method: HTTPMethod
  var body: [UInt8]
  var coordinator: ProfileCoordinator
}

/// One route: its path, what the index pages say of it, and the function
/// that parses its parameters (``QueryParameters``) and says what to do; a
/// parameter it refuses is answered 400 by the handler, which only routes
/// and writes responses.
struct Route: Sendable {
  var path: String
  var summary: String
  var example: String
  /// POST is accepted as well as GET/HEAD (the pprof symbol protocol).
  var acceptsPost = false
  var handle: @Sendable (RouteRequest) throws(RequestError) -> RouteAction

  /// Errors on these paths carry `X-Go-Pprof: 1` so `go tool pprof` prints them.
  var isPprof: Bool { path.hasPrefix("/debug/pprof") }
}

/// The route table: one list feeds routing, the `/` and `/debug/pprof/`
/// index pages, and docs/http-api.md (checked by DocsTests).
enum Routes {
  static let all: [Route] = [
    Route(
      path: "/", summary: "this page: status, endpoints, and a flame graph viewer that records a profile",
      example: "/", handle: { _ in .respond(IndexPages.index(routes: Routes.all)) }),
    Route(
      path: "/profile",
      summary:
        "record every thread for `duration` seconds; mode=cpu|wall|alloc (object = alloc), duration=<seconds>, interval=<µs> (alloc: <bytes>), format=speedscope|pprof|collapsed|html, engine=auto|perf|timer (cpu), include_profiler=1 (keep the profiler's own threads), async=0 (thread stacks only, no async callers), label=key=value (only samples with these labels), group_by=key (one group per label value), tasks=1 (wall: every Swift task on no thread too)",
      example: "/profile?mode=cpu&duration=10&format=html",
      handle: { request throws(RequestError) in
        let parsed = try ProfileRequest.parse(request.query, maxDuration: request.coordinator.configuration.maxDuration)
        return .run { coordinator, cancel in coordinator.profile(parsed, cancellation: cancel) }
      }),
    Route(
      path: "/threads", summary: "every thread's stack right now (text; format=json for JSON)", example: "/threads",
      handle: { request throws(RequestError) in
        let parameters = try QueryParameters(request.query, allowed: ["format"])
        let format = try parameters.choice("format", ["text": ProfileCoordinator.ThreadsFormat.text, "json": .json]) ?? .text
        return .run { coordinator, _ in coordinator.threads(format: format) }
      }),
    Route(
      path: "/profiles/", summary: "/profiles/<name>: a per-request profile stored by the middleware (requestProfiling.store)",
      example: "/profiles/",
      handle: { request in
        .respond(request.coordinator.storedProfile(name: String(request.query.path.dropFirst("/profiles/".count))))
      }),
    Route(
      path: "/debug/pprof/", summary: "index of the pprof endpoints (net/http/pprof style)", example: "/debug/pprof/",
      handle: { _ in .respond(IndexPages.pprofIndex(routes: Routes.all)) }),
    Route(
      path: "/debug/pprof/profile",
      summary: "CPU profile, gzipped pprof; seconds=<N> (default 30). For go tool pprof, Pyroscope/Alloy, Parca",
      example: "/debug/pprof/profile?seconds=30", handle: { request throws(RequestError) in try pprofRecording(.cpu, request) }),
    Route(
      path: "/debug/pprof/wall", summary: "wall-clock profile of every thread, gzipped pprof; seconds=<N> (default 30)",
      example: "/debug/pprof/wall?seconds=30", handle: { request throws(RequestError) in try pprofRecording(.wall, request) }),
    Route(
      path: "/debug/pprof/allocs",
      summary:
        "allocations (alloc_objects, alloc_space), gzipped pprof: cumulative since start with APP_PROFILER_ALLOC_ALWAYS_ON=1; seconds=<N> for a window",
      example: "/debug/pprof/allocs",
      handle: { request throws(RequestError) in
        guard let window = try PprofSeconds.parseOptional(request.query, maxDuration: request.coordinator.configuration.maxDuration)
        else { return .run { coordinator, _ in coordinator.cumulativeAllocations() } }
        return .run { coordinator, cancel in coordinator.pprof(mode: .alloc, duration: window, cancellation: cancel) }
      }),
    Route(
      path: "/debug/pprof/heap",
      summary:
        "live heap (alloc_objects, alloc_space, inuse_objects, inuse_space), gzipped pprof: since start with APP_PROFILER_HEAP=1; seconds=<N> for what a window allocated and kept; gc=1 ignored",
      example: "/debug/pprof/heap",
      handle: { request throws(RequestError) in
        guard
          let window = try PprofSeconds.parseOptional(
            request.query, maxDuration: request.coordinator.configuration.maxDuration, ignoring: ["gc"])
        else { return .run { coordinator, _ in coordinator.heap() } }
        return .run { coordinator, cancel in coordinator.pprof(mode: .heap, duration: window, cancellation: cancel) }
      }),
    Route(
      path: "/debug/pprof/flight",
      summary:
        "the flight recorder's last seconds at once (APP_PROFILER_FLIGHT_RECORDER=N), gzipped pprof; seconds=<N> (default: all kept), mode=cpu|wall",
      example: "/debug/pprof/flight?seconds=30&mode=cpu",
      handle: { request throws(RequestError) in
        let parameters = try QueryParameters(request.query, allowed: ["seconds", "mode"])
        let seconds = try parameters.integer("seconds", in: 1...3600)
        let mode = try parameters.choice("mode", ["cpu": Profile.Mode.cpu, "wall": .wall]) ?? .cpu
        return .respond(request.coordinator.flight(mode: mode, seconds: seconds))
      }),
    Route(
      path: "/debug/pprof/threads",
      summary: "every thread's stack now; debug=0 pprof, debug=1 grouped text, debug=2 one entry per thread",
      example: "/debug/pprof/threads?debug=2", handle: threadDump),
    Route(
      path: "/debug/pprof/tasks",
      summary:
        "every live Swift task and its await chain, suspended ones included (docs/tasks.md); debug=0 pprof (tasks/count), debug=1 grouped text, debug=2 one entry per task; suspended_for=<seconds> keeps tasks waiting at least that long at the same await",
      example: "/debug/pprof/tasks?debug=1", handle: taskDump),
    Route(
      path: "/debug/pprof/goroutine",
      summary: "Go's name for the thread dump (what Alloy's and Parca's goroutine block scrape): every thread's stack now, as /debug/pprof/threads",
      example: "/debug/pprof/goroutine", handle: threadDump),
    Route(
      path: "/debug/pprof/block",
      summary:
        "contended pthread lock waits by the waiter's stack (contentions, delay), gzipped pprof: seconds=<N> for a window; without it cumulative since start with APP_PROFILER_LOCKS=1, else an empty profile; debug, gc ignored",
      example: "/debug/pprof/block?seconds=10", handle: { request throws(RequestError) in try contention(.block, request) }),
    Route(
      path: "/debug/pprof/mutex",
      summary:
        "the same waits charged to the holder's stack at the unlock that ended them (contentions, delay), as /debug/pprof/block",
      example: "/debug/pprof/mutex?seconds=10", handle: { request throws(RequestError) in try contention(.mutex, request) }),
    Route(
      path: "/debug/pprof/symbol",
      summary: "net/http/pprof's symbol protocol: GET says symbols are available; POST 0xADDR+0xADDR… answers '0xADDR name' lines",
      example: "/debug/pprof/symbol", acceptsPost: true,
      handle: { request in
        // Off the event loop: the first lookup of an image reads its symbol tables.
        let body = request.method == .POST ? request.body : nil
        return .run { coordinator, _ in coordinator.symbol(body: body) }
      }),
  ]

  /// `debug=0` pprof (default), `1` grouped text, `2` one entry per thread or task.
  private static func dumpFormat(_ parameters: QueryParameters) throws(RequestError) -> ProfileCoordinator.ThreadsFormat {
    try parameters.choice("debug", ["0": ProfileCoordinator.ThreadsFormat.pprof, "1": .grouped, "2": .text]) ?? .pprof
  }

  /// `/debug/pprof/threads` and `/goroutine`.
  private static func threadDump(_ request: RouteRequest) throws(RequestError) -> RouteAction {
    let format = try dumpFormat(QueryParameters(request.query, allowed: ["debug"]))
    return .run { coordinator, _ in coordinator.threads(format: format) }
  }

  /// `/debug/pprof/tasks`: `debug` as for threads, `suspended_for` in
  /// seconds (a number, or a duration with a unit: 30s, 2m).
  private static func taskDump(_ request: RouteRequest) throws(RequestError) -> RouteAction {
    let parameters = try QueryParameters(request.query, allowed: ["debug", "suspended_for"])
    let format = try dumpFormat(parameters)
    let suspendedFor = try parameters.duration("suspended_for")
    return .run { coordinator, _ in coordinator.tasks(format: format, suspendedFor: suspendedFor) }
  }

  /// `/debug/pprof/block` and `/mutex`: `seconds` records a window; Go's
  /// other parameters (`debug`, `gc`) are accepted and ignored.
  private static func contention(_ mode: Profile.Mode, _ request: RouteRequest) throws(RequestError) -> RouteAction {
    guard
      let window = try PprofSeconds.parseOptional(
        request.query, maxDuration: request.coordinator.configuration.maxDuration, ignoring: ["debug", "gc"])
    else { return .run { coordinator, _ in coordinator.cumulativeLocks(mode) } }
    return .run { coordinator, cancel in coordinator.pprof(mode: mode, duration: window, cancellation: cancel) }
  }

  /// `/debug/pprof/profile` and `/wall`: `seconds` (default 30 s), then a recording.
  private static func pprofRecording(_ mode: Profile.Mode, _ request: RouteRequest) throws(RequestError) -> RouteAction {
    let duration = try PprofSeconds.parse(request.query, maxDuration: request.coordinator.configuration.maxDuration)
    return .run { coordinator, cancel in coordinator.pprof(mode: mode, duration: duration, cancellation: cancel) }
  }

  static func match(_ path: String) -> Route? {
    if path == "/debug/pprof" { return all.first { $0.path == "/debug/pprof/" } }
    if path.hasPrefix("/profiles/") { return all.first { $0.path == "/profiles/" } }
    return all.first { $0.path == path }
  }
}
