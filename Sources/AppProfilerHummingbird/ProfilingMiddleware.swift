// Built only with the `Hummingbird` trait: `.package(url: …, traits: ["Hummingbird"])`.
#if Hummingbird
@_exported import AppProfilerServer
import AppProfiler
import AppProfilerTracing
import HTTPTypes
import Hummingbird
import Instrumentation
import NIOCore
import ServiceContextModule

/// Per-request profiling for Hummingbird 2: a request with `?profile=cpu`
/// (`wall`, `alloc`) or `X-Profile: cpu` is handled normally while a
/// profiling session runs for its lifetime; the response then carries the
/// profile (`profile_format=html|speedscope|pprof`, default html) — or, with a
/// store configured, its normal body plus `X-Profile-Path`.
///
/// ```swift
/// let profiler = ProfileServer(configuration: configuration)
/// let router = Router(context: ProfilingRequestContext.self)
/// router.add(middleware: ProfilingMiddleware(server: profiler))
/// let app = Application(router: router, services: [profiler])
/// ```
///
/// Off unless `configuration.requestProfiling.enabled` (or
/// `APP_PROFILER_REQUEST_PROFILING=1`), and by default only for loopback
/// clients, which needs a context that knows the client's address
/// (``ProfilingRequestContext`` or any `RemoteAddressRequestContext`).
/// The profile holds only this request's work: its task and the child
/// tasks it creates (a task-scoped session); concurrent requests are left
/// out, and profiled requests may overlap (they share one sampler).
///
/// It also labels every request (docs/labels.md): the samples its handling
/// takes — in any profile of the process — carry `route` (the matched route
/// pattern, e.g. `/users/:id`, never the raw path) and `method`, so
/// `go tool pprof -tagfocus route=/users/:id` or `/profile?label=…` shows
/// one endpoint. Add the middleware before the routes (Hummingbird applies
/// router middleware to the routes added after it). With ``traceLabels``,
/// also `trace_id` and `span_id` of the request's span.
public struct ProfilingMiddleware<Context: RequestContext>: RouterMiddleware {
  public let profiler: RequestProfiler
  /// Label requests with `route` and `method` (default true).
  public var labelsRequests = true
  /// Also `trace_id` and `span_id` of the request's span (add the tracing
  /// middleware before this one). Default: the configuration's
  /// `requestProfiling.traceLabels` (`APP_PROFILER_TRACE_LABELS=1`).
  public var traceLabels: Bool
  /// The instrument that propagates spans; nil: `InstrumentationSystem.instrument`.
  public var instrument: (any Instrument)? = nil

  /// Uses the server's configuration (with the `APP_PROFILER_*` variables).
  public init(server: ProfileServer) {
    self.profiler = RequestProfiler(server: server)
    self.traceLabels = profiler.configuration.traceLabels
  }

  public init(configuration: RequestProfilingConfiguration) {
    self.profiler = RequestProfiler(configuration: configuration)
    self.traceLabels = configuration.traceLabels
  }

  public func handle(
    _ request: Request, context: Context, next: (Request, Context) async throws -> Response
  ) async throws -> Response {
    guard labelsRequests else { return try await profile(request, context: context, next: next) }
    var labels = ["route": context.endpointPath ?? "(unmatched)", "method": request.method.rawValue]
    if traceLabels, let span = ServiceContext.current {
      labels.merge(AppProfilerHummingbird.traceLabels(for: span, instrument: instrument ?? InstrumentationSystem.instrument)) { $1 }
    }
    return try await Profiler.withLabels(labels) {
      try await profile(request, context: context, next: next)
    }
  }

  private func profile(
    _ request: Request, context: Context, next: (Request, Context) async throws -> Response
  ) async throws -> Response {
    guard profiler.configuration.slowRequestThreshold != nil else { return try await decideAndRun(request, context: context, next: next) }
    let started = ContinuousClock.now
    defer { profiler.observe(latency: .now - started, route: context.endpointPath ?? "(unmatched)") }
    return try await decideAndRun(request, context: context, next: next)
  }

  private func decideAndRun(
    _ request: Request, context: Context, next: (Request, Context) async throws -> Response
  ) async throws -> Response {
    guard profiler.configuration.enabled else { return try await next(request, context) }
    let header = HTTPField.Name(profiler.configuration.header).flatMap { request.headers[$0] }
    let decision = profiler.decide(
      target: request.uri.description, header: header, clientIsLoopback: Self.isLoopback(context))
    switch decision {
    case .none:
      return try await next(request, context)
    case .invalid(let message):
      var response = try await next(request, context)
      Self.add([("X-Profile-Status", "400 \(message)")], to: &response)
      return response
    case .profile(let plan):
      let replaceBody = profiler.configuration.store == nil
      let (response, outcome) = try await profiler.run(plan) { () async throws -> Response in
        let response = try await next(request, context)
        guard replaceBody else { return response }
        // Produce the body now, inside the session, so streamed work is in
        // the profile too; kept for the case the profile could not be taken
        // (busy, failed) and the normal answer goes out after all.
        let collector = CollectingBodyWriter()
        try await response.body.write(collector.reference)
        return Response(status: response.status, headers: response.headers, body: ResponseBody(byteBuffer: collector.buffer))
      }
      switch outcome {
      case .profile(let body, let contentType, let fileName):
        var headers = HTTPFields()
        headers[.contentType] = contentType
        headers[.contentDisposition] = "inline; filename=\"\(fileName)\""
        headers[HTTPField.Name("X-Profile-Status")!] = "200 profile in the body"
        headers[HTTPField.Name("X-Profiled-Status")!] = String(response.status.code)
        return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: body)))
      default:
        var result = response
        Self.add(outcome.headers, to: &result)
        return result
      }
    }
  }

  static func add(_ fields: [(String, String)], to response: inout Response) {
    for (name, value) in fields {
      if let name = HTTPField.Name(name) { response.headers[name] = value }
    }
  }

  /// nil when the context does not know the client (then only
  /// `loopbackOnly = false` lets a request be profiled).
  static func isLoopback(_ context: Context) -> Bool? {
    guard let remote = context as? any RemoteAddressRequestContext else { return nil }
    guard let address = remote.remoteAddress else { return nil }
    if case .unixDomainSocket = address { return true }
    return isLoopbackAddress(address.ipAddress)
  }
}

/// Collects a response body in memory.
struct CollectingBodyWriter {
  final class Storage: @unchecked Sendable {
    var buffer = ByteBuffer()
  }

  struct Writer: ResponseBodyWriter {
    let storage: Storage
    mutating func write(_ buffer: ByteBuffer) async throws {
      var copy = buffer
      storage.buffer.writeBuffer(&copy)
    }
    consuming func finish(_ trailingHeaders: HTTPFields?) async throws {}
  }

  let storage = Storage()
  var reference: Writer { Writer(storage: storage) }
  var buffer: ByteBuffer { storage.buffer }
}

/// A request context that knows the client's address, so the profiling
/// middleware can keep to loopback clients.
public struct ProfilingRequestContext: RequestContext, RemoteAddressRequestContext {
  public var coreContext: CoreRequestContextStorage
  public let remoteAddress: SocketAddress?

  public init(source: ApplicationRequestContextSource) {
    self.coreContext = .init(source: source)
    self.remoteAddress = source.channel.remoteAddress
  }
}
/// The `trace_id`/`span_id` labels of a request's span (internal: the
/// integration's tests call it through `@testable import`).
func traceLabels(for context: ServiceContext, instrument: any Instrument) -> [String: String] {
  TraceLabels.labels(for: context, instrument: instrument)
}
#endif
