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
/// that parses its parameters and says what to do. The handler file only
/// routes and writes responses.
struct Route: Sendable {
  var path: String
  var summary: String
  var example: String
  /// POST is accepted as well as GET/HEAD (the pprof symbol protocol).
  var acceptsPost = false
  var handle: @Sendable (RouteRequest) -> RouteAction

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
      handle: { request in
        do throws(RequestError) {
          let parsed = try ProfileRequest.parse(request.query, maxDuration: request.coordinator.configuration.maxDuration)
          return .run { coordinator, cancel in coordinator.profile(parsed, cancellation: cancel) }
        } catch {
          return .respond(.error(error.status, error.message))
        }
      }),
    Route(
      path: "/threads", summary: "every thread's stack right now (text; format=json for JSON)", example: "/threads",
      handle: { request in
        let format = request.query.value("format") ?? "text"
        if let unknown = request.query.parameters.first(where: { $0.name != "format" }) {
          return .respond(.error(.badRequest, "unknown parameter '\(unknown.name)': allowed format"))
        }
        guard format == "text" || format == "json" else {
          return .respond(.error(.badRequest, "invalid parameter format='\(format)': allowed text, json"))
        }
        return .run { coordinator, _ in coordinator.threads(format: format == "json" ? .json : .text) }
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
      example: "/debug/pprof/profile?seconds=30", handle: { pprofRecording(.cpu, $0) }),
    Route(
      path: "/debug/pprof/wall", summary: "wall-clock profile of every thread, gzipped pprof; seconds=<N> (default 30)",
      example: "/debug/pprof/wall?seconds=30", handle: { pprofRecording(.wall, $0) }),
    Route(
      path: "/debug/pprof/allocs",
      summary:
        "allocations (alloc_objects, alloc_space), gzipped pprof: cumulative since start with APP_PROFILER_ALLOC_ALWAYS_ON=1; seconds=<N> for a window",
      example: "/debug/pprof/allocs",
      handle: { request in
        do throws(RequestError) {
          guard let window = try PprofSeconds.parseOptional(request.query, maxDuration: request.coordinator.configuration.maxDuration)
          else { return .run { coordinator, _ in coordinator.cumulativeAllocations() } }
          return .run { coordinator, cancel in coordinator.pprof(mode: .alloc, duration: window, cancellation: cancel) }
        } catch {
          return .respond(.error(error.status, error.message))
        }
      }),
    Route(
      path: "/debug/pprof/heap",
      summary:
        "live heap (alloc_objects, alloc_space, inuse_objects, inuse_space), gzipped pprof: since start with APP_PROFILER_HEAP=1; seconds=<N> for what a window allocated and kept; gc=1 ignored",
      example: "/debug/pprof/heap",
      handle: { request in
        do throws(RequestError) {
          guard
            let window = try PprofSeconds.parseOptional(
              request.query, maxDuration: request.coordinator.configuration.maxDuration, ignoring: ["gc"])
          else { return .run { coordinator, _ in coordinator.heap() } }
          return .run { coordinator, cancel in coordinator.pprof(mode: .heap, duration: window, cancellation: cancel) }
        } catch {
          return .respond(.error(error.status, error.message))
        }
      }),
    Route(
      path: "/debug/pprof/flight",
      summary:
        "the flight recorder's last seconds at once (APP_PROFILER_FLIGHT_RECORDER=N), gzipped pprof; seconds=<N> (default: all kept), mode=cpu|wall",
      example: "/debug/pprof/flight?seconds=30&mode=cpu",
      handle: { request in
        var seconds: Int? = nil
        var mode = Profile.Mode.cpu
        for (name, value) in request.query.parameters {
          switch name {
          case "seconds":
            guard let number = Int(value), (1...3600).contains(number) else {
              return .respond(.error(.badRequest, "invalid parameter seconds='\(value)': allowed 1 ... 3600"))
            }
            seconds = number
          case "mode":
            guard value == "cpu" || value == "wall" else {
              return .respond(.error(.badRequest, "invalid parameter mode='\(value)': allowed cpu, wall"))
            }
            mode = Profile.Mode(rawValue: value)
          default:
            return .respond(.error(.badRequest, "unknown parameter '\(name)': allowed seconds, mode"))
          }
        }
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
      example: "/debug/pprof/block?seconds=10", handle: { contention(.block, $0) }),
    Route(
      path: "/debug/pprof/mutex",
      summary:
        "the same waits charged to the holder's stack at the unlock that ended them (contentions, delay), as /debug/pprof/block",
      example: "/debug/pprof/mutex?seconds=10", handle: { contention(.mutex, $0) }),
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

  /// `/debug/pprof/threads` and `/goroutine`: `debug=0` pprof (default),
  /// `1` grouped text, `2` one entry per thread.
  private static func threadDump(_ request: RouteRequest) -> RouteAction {
    let debug = request.query.value("debug") ?? "0"
    if let unknown = request.query.parameters.first(where: { $0.name != "debug" }) {
      return .respond(.error(.badRequest, "unknown parameter '\(unknown.name)': allowed debug"))
    }
    guard let format = ["0": ProfileCoordinator.ThreadsFormat.pprof, "1": .grouped, "2": .text][debug] else {
      return .respond(.error(.badRequest, "invalid parameter debug='\(debug)': allowed 0, 1, 2"))
    }
    return .run { coordinator, _ in coordinator.threads(format: format) }
  }

  /// `/debug/pprof/tasks`: `debug=0|1|2` as for threads, `suspended_for`
  /// in seconds (a number, or a duration with a unit: 30s, 2m).
  private static func taskDump(_ request: RouteRequest) -> RouteAction {
    let debug = request.query.value("debug") ?? "0"
    if let unknown = request.query.parameters.first(where: { !["debug", "suspended_for"].contains($0.name) }) {
      return .respond(.error(.badRequest, "unknown parameter '\(unknown.name)': allowed debug, suspended_for"))
    }
    guard let format = ["0": ProfileCoordinator.ThreadsFormat.pprof, "1": .grouped, "2": .text][debug] else {
      return .respond(.error(.badRequest, "invalid parameter debug='\(debug)': allowed 0, 1, 2"))
    }
    var minimum: Duration? = nil
    if let text = request.query.value("suspended_for") {
      guard let seconds = parseSeconds(text) else {
        return .respond(.error(.badRequest, "invalid parameter suspended_for='\(text)': allowed seconds ≥ 0 (30, 30s, 2m, 1h)"))
      }
      minimum = seconds
    }
    let suspendedFor = minimum
    return .run { coordinator, _ in coordinator.tasks(format: format, suspendedFor: suspendedFor) }
  }

  /// `30`, `30s`, `1.5s`, `2m`, `1h` → a duration; nil when not one.
  static func parseSeconds(_ text: String) -> Duration? {
    let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)]
    var number = Substring(text)
    var scale = 1.0
    for (suffix, factor) in units where text.hasSuffix(suffix) {
      number = text.dropLast(suffix.count)
      scale = factor
      break
    }
    guard let value = Double(number), value.isFinite, value >= 0, value * scale <= 365 * 86400 else { return nil }
    return .milliseconds(Int64((value * scale * 1000).rounded()))
  }

  /// `/debug/pprof/block` and `/mutex`: `seconds` records a window; Go's
  /// other parameters (`debug`, `gc`) are accepted and ignored.
  private static func contention(_ mode: Profile.Mode, _ request: RouteRequest) -> RouteAction {
    do throws(RequestError) {
      guard
        let window = try PprofSeconds.parseOptional(
          request.query, maxDuration: request.coordinator.configuration.maxDuration, ignoring: ["debug", "gc"])
      else { return .run { coordinator, _ in coordinator.cumulativeLocks(mode) } }
      return .run { coordinator, cancel in coordinator.pprof(mode: mode, duration: window, cancellation: cancel) }
    } catch {
      return .respond(.error(error.status, error.message))
    }
  }

  /// `/debug/pprof/profile` and `/wall`: `seconds` (default 30 s), then a recording.
  private static func pprofRecording(_ mode: Profile.Mode, _ request: RouteRequest) -> RouteAction {
    do throws(RequestError) {
      let duration = try PprofSeconds.parse(request.query, maxDuration: request.coordinator.configuration.maxDuration)
      return .run { coordinator, cancel in coordinator.pprof(mode: mode, duration: duration, cancellation: cancel) }
    } catch {
      return .respond(.error(error.status, error.message))
    }
  }

  static func match(_ path: String) -> Route? {
    if path == "/debug/pprof" { return all.first { $0.path == "/debug/pprof/" } }
    if path.hasPrefix("/profiles/") { return all.first { $0.path == "/profiles/" } }
    return all.first { $0.path == path }
  }
}
