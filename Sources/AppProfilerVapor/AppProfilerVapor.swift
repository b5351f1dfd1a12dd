// Built only with the `Vapor` trait: `.package(url: …, traits: ["Vapor"])`.
#if Vapor
@_exported import AppProfilerServer
import AppProfiler
import AppProfilerTracing
import Instrumentation
import NIOConcurrencyHelpers
import ServiceContextModule
import Vapor

extension Application {
  /// The profile server of this application: `app.profiler.enable()` in
  /// `configure(_:)` starts it after boot and stops it on shutdown.
  public var profiler: ProfilerIntegration { ProfilerIntegration(application: self) }

  /// `app.profiler`.
  public struct ProfilerIntegration: Sendable {
    let application: Application

    struct Key: StorageKey {
      typealias Value = ProfileServer
    }

    /// Creates the profile server (`APP_PROFILER_*` variables apply on top of
    /// `configuration`) and registers it with the application's lifecycle:
    /// it listens once the application has booted and stops (removing its
    /// socket and discovery record) when the application shuts down. Calling
    /// it again does nothing.
    @discardableResult
    public func enable(_ configuration: ProfileServerConfiguration = ProfileServerConfiguration()) -> ProfileServer {
      if let existing = application.storage[Key.self] { return existing }
      return enable(server: ProfileServer(configuration: configuration, logger: application.logger))
    }

    /// Registers a server made by the app — e.g. one configured by
    /// swift-configuration, `ProfileServer(config: config.scoped(to:
    /// "appProfiler"))` — with the application's lifecycle, as ``enable(_:)``
    /// does. Calling it again does nothing (the first server stays).
    @discardableResult
    public func enable(server: ProfileServer) -> ProfileServer {
      if let existing = application.storage[Key.self] { return existing }
      application.storage[Key.self] = server
      application.lifecycle.use(ProfileServerLifecycle(server: server))
      return server
    }

    /// The server, once ``enable(_:)`` ran.
    public var server: ProfileServer? { application.storage[Key.self] }

    /// The per-request profiling middleware for this application's server
    /// (enables the server with the default configuration if needed):
    /// `app.middleware.use(app.profiler.middleware)`.
    public var middleware: ProfilingMiddleware { ProfilingMiddleware(server: server ?? enable()) }
  }
}

/// Starts the profile server after boot, stops it on shutdown.
struct ProfileServerLifecycle: LifecycleHandler {
  let server: ProfileServer

  func didBootAsync(_ application: Application) async throws {
    try await server.startListening()
  }

  func shutdownAsync(_ application: Application) async {
    await server.stop()
  }

  // Applications started without async (`Application(_:)` + `run()`).
  func didBoot(_ application: Application) throws {
    let server = self.server
    let logger = application.logger
    Task {
      do { try await server.startListening() } catch { logger.error("app-profiler did not start: \(error)") }
    }
  }

  func shutdown(_ application: Application) {
    let server = self.server
    let done = NIOLockedValueBox(false)
    Task {
      await server.stop()
      done.withLockedValue { $0 = true }
    }
    // Sync shutdown: wait a little for the socket and record to be removed.
    for _ in 0..<200 where !done.withLockedValue({ $0 }) { usleep(10_000) }
  }
}

/// The rest of the responder chain, called from the request's task. Vapor
/// runs a synchronous route's closure on the event loop, and an async
/// route (or a middleware of a route group) in a task it creates there: the
/// chain is called on the event loop with this task's labels and session
/// scope bound on that thread for exactly the call, so the synchronous work
/// carries them and a task created there inherits them. This task only waits
/// meanwhile (a delegated wait: task wall profiles count the route's tasks).
struct ChainCaller: AsyncResponder {
  let next: any Responder

  func respond(to request: Request) async throws -> Response {
    let context = Profiler.currentLabelContext
    let next = self.next
    let wait = Profiler.DelegatedWait.begin()
    defer { wait.end() }
    return try await request.eventLoop.flatSubmit {
      Profiler.withLabelContext(context) { next.respond(to: request) }
    }.get()
  }
}

/// Per-request profiling for Vapor 4: a request with `?profile=cpu`
/// (`wall`, `alloc`) or `X-Profile: cpu` is handled normally while a session
/// runs for its lifetime; the response then carries the profile
/// (`profile_format=html|speedscope|pprof`, default html) — or, with a store
/// configured, its normal body plus `X-Profile-Path`. Off unless
/// `requestProfiling.enabled` (`APP_PROFILER_REQUEST_PROFILING=1`); loopback
/// clients only by default. The profile holds only this request's work
/// (its task and child tasks); profiled requests may overlap.
///
/// It also labels every request (docs/labels.md): the samples its handling
/// takes — in any profile of the process — carry `route` (the matched route
/// pattern, e.g. `/users/:id`, never the raw path; `(unmatched)` for 404s)
/// and `method`. Vapor routes before it runs global middleware, so
/// `app.middleware.use(app.profiler.middleware)` sees the route.
public struct ProfilingMiddleware: AsyncMiddleware {
  /// Vapor's entry: the async middleware below, given the rest of the chain
  /// as ``ChainCaller`` so that a synchronous route's closure — which Vapor
  /// runs on the event loop, outside the request's task — still carries the
  /// request's labels and per-request profile.
  public func respond(to request: Request, chainingTo next: any Responder) -> EventLoopFuture<Response> {
    let promise = request.eventLoop.makePromise(of: Response.self)
    promise.completeWithTask { try await self.respond(to: request, chainingTo: ChainCaller(next: next)) }
    return promise.futureResult
  }

  public let profiler: RequestProfiler
  /// Label requests with `route` and `method` (default true).
  public var labelsRequests = true
  /// Also `trace_id` and `span_id` of the request's span. Default: the
  /// configuration's `requestProfiling.traceLabels` (`APP_PROFILER_TRACE_LABELS=1`).
  public var traceLabels: Bool
  /// The instrument that propagates spans; nil: `InstrumentationSystem.instrument`.
  public var instrument: (any Instrument)? = nil

  public init(server: ProfileServer) {
    self.profiler = RequestProfiler(server: server)
    self.traceLabels = profiler.configuration.traceLabels
  }

  public init(configuration: RequestProfilingConfiguration) {
    self.profiler = RequestProfiler(configuration: configuration)
    self.traceLabels = configuration.traceLabels
  }

  public func respond(to request: Request, chainingTo next: any AsyncResponder) async throws -> Response {
    guard labelsRequests else { return try await profile(request, chainingTo: next) }
    var labels = ["route": Self.routePattern(request.route), "method": request.method.rawValue]
    if traceLabels {
      // Vapor keeps the request's span context on the request.
      let context = ServiceContext.current ?? request.serviceContext
      labels.merge(TraceLabels.labels(for: context, instrument: instrument ?? InstrumentationSystem.instrument)) { $1 }
    }
    return try await Profiler.withLabels(labels) {
      try await profile(request, chainingTo: next)
    }
  }

  /// `/users/:id` for a route of path components `users`, `:id`.
  static func routePattern(_ route: Route?) -> String {
    guard let route else { return "(unmatched)" }
    return "/" + route.path.map { "\($0)" }.joined(separator: "/")
  }

  private func profile(_ request: Request, chainingTo next: any AsyncResponder) async throws -> Response {
    guard profiler.configuration.slowRequestThreshold != nil else { return try await decideAndRun(request, chainingTo: next) }
    let started = ContinuousClock.now
    defer { profiler.observe(latency: .now - started, route: Self.routePattern(request.route)) }
    return try await decideAndRun(request, chainingTo: next)
  }

  private func decideAndRun(_ request: Request, chainingTo next: any AsyncResponder) async throws -> Response {
    guard profiler.configuration.enabled else { return try await next.respond(to: request) }
    let loopback: Bool? = request.remoteAddress.map { address in
      if case .unixDomainSocket = address { return true }
      return isLoopbackAddress(address.ipAddress)
    }
    let decision = profiler.decide(
      target: request.url.string, header: request.headers.first(name: profiler.configuration.header),
      clientIsLoopback: loopback)
    switch decision {
    case .none:
      return try await next.respond(to: request)
    case .invalid(let message):
      let response = try await next.respond(to: request)
      response.headers.replaceOrAdd(name: "X-Profile-Status", value: "400 \(message)")
      return response
    case .profile(let plan):
      let replaceBody = profiler.configuration.store == nil
      let (response, outcome) = try await profiler.run(plan) { () async throws -> Response in
        let response = try await next.respond(to: request)
        if replaceBody {
          // Produce a streamed body now, inside the session; kept for the
          // case the profile could not be taken (busy, failed).
          if let collected = try await response.body.collect(on: request.eventLoop).get() {
            response.body = Response.Body(buffer: collected)
          }
        }
        return response
      }
      switch outcome {
      case .profile(let body, let contentType, let fileName):
        let profiled = Response(status: .ok, body: Response.Body(buffer: ByteBuffer(bytes: body)))
        profiled.headers.replaceOrAdd(name: .contentType, value: contentType)
        profiled.headers.replaceOrAdd(name: .contentDisposition, value: "inline; filename=\"\(fileName)\"")
        profiled.headers.replaceOrAdd(name: "X-Profile-Status", value: "200 profile in the body")
        profiled.headers.replaceOrAdd(name: "X-Profiled-Status", value: String(response.status.code))
        return profiled
      default:
        for (name, value) in outcome.headers { response.headers.replaceOrAdd(name: name, value: value) }
        return response
      }
    }
  }
}
#endif
