/// The route table: one list feeds routing, the `/` and `/debug/pprof/`
/// index pages, and the README's endpoint table.
struct Route: Sendable {
  enum Endpoint: Sendable {
    case index
    case profile
    case threads
    case pprofIndex
    case pprofProfile
    case pprofWall
    case pprofAllocs
    case pprofThreads
    case pprofSymbol
    case storedProfile
  }

  var path: String
  var endpoint: Endpoint
  var summary: String
  var example: String

  /// Errors on these paths carry `X-Go-Pprof: 1` so `go tool pprof` prints them.
  var isPprof: Bool { path.hasPrefix("/debug/pprof") }
}

enum Routes {
  static let all: [Route] = [
    Route(
      path: "/", endpoint: .index, summary: "this page: status, endpoints, and a flame graph viewer that records a profile",
      example: "/"),
    Route(
      path: "/profile", endpoint: .profile,
      summary:
        "record every thread for `duration` seconds; mode=cpu|wall|alloc (object = alloc), duration=<seconds>, interval=<µs> (alloc: <bytes>), format=speedscope|pprof|collapsed|html, engine=auto|perf|timer (cpu)",
      example: "/profile?mode=cpu&duration=10&format=html"),
    Route(
      path: "/threads", endpoint: .threads,
      summary: "every thread's stack right now (text; format=json for JSON)",
      example: "/threads"),
    Route(
      path: "/profiles/", endpoint: .storedProfile,
      summary: "/profiles/<name>: a per-request profile stored by the middleware (requestProfiling.store)",
      example: "/profiles/"),
    Route(
      path: "/debug/pprof/", endpoint: .pprofIndex,
      summary: "index of the pprof endpoints (net/http/pprof style)",
      example: "/debug/pprof/"),
    Route(
      path: "/debug/pprof/profile", endpoint: .pprofProfile,
      summary: "CPU profile, gzipped pprof; seconds=<N> (default 30). For go tool pprof, Pyroscope/Alloy, Parca",
      example: "/debug/pprof/profile?seconds=30"),
    Route(
      path: "/debug/pprof/wall", endpoint: .pprofWall,
      summary: "wall-clock profile of every thread, gzipped pprof; seconds=<N> (default 30)",
      example: "/debug/pprof/wall?seconds=30"),
    Route(
      path: "/debug/pprof/allocs", endpoint: .pprofAllocs,
      summary:
        "allocations (alloc_objects, alloc_space), gzipped pprof: cumulative since start with APP_PROFILER_ALLOC_ALWAYS_ON=1; seconds=<N> for a window",
      example: "/debug/pprof/allocs"),
    Route(
      path: "/debug/pprof/threads", endpoint: .pprofThreads,
      summary: "every thread's stack now; debug=0 pprof, debug=1 grouped text, debug=2 one entry per thread",
      example: "/debug/pprof/threads?debug=2"),
    Route(
      path: "/debug/pprof/symbol", endpoint: .pprofSymbol,
      summary: "net/http/pprof's symbol protocol: GET says symbols are available; POST 0xADDR+0xADDR… answers '0xADDR name' lines",
      example: "/debug/pprof/symbol"),
  ]

  static func match(_ path: String) -> Route? {
    if path == "/debug/pprof" { return all.first { $0.endpoint == .pprofIndex } }
    if path.hasPrefix("/profiles/") { return all.first { $0.endpoint == .storedProfile } }
    return all.first { $0.path == path }
  }
}
