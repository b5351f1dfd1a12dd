import AppProfilerHummingbird
import Foundation
import Hummingbird
import Instrumentation
import Logging
import NIOCore
import Synchronization

/// A small service to profile: a CPU-heavy route, a blocking one and an
/// allocating one. `swift run HummingbirdExample` serves it on
/// 127.0.0.1:8080 with the profile server on its Unix socket; add
/// `APP_PROFILER_REQUEST_PROFILING=1` and try
/// `curl 'http://127.0.0.1:8080/slow?profile=cpu' -o slow.html`.
public enum HummingbirdExample {
  /// The README's example: the profile server as one of the app's services,
  /// and the per-request middleware.
  ///
  /// - Parameters:
  ///   - labelsRequests: the middleware labels requests with route and method.
  ///   - before: adds middleware that runs before the profiling middleware
  ///     (a tracing middleware, so that the request's span is current).
  ///   - instrument: the instrument the middleware reads trace ids with
  ///     (nil: `InstrumentationSystem.instrument`).
  public static func makeApplication(
    host: String = "127.0.0.1", port: Int = 8080, profiler: ProfileServer, profilingMiddleware: Bool = true,
    labelsRequests: Bool = true, before: (Router<ProfilingRequestContext>) -> Void = { _ in },
    instrument: (any Instrument)? = nil,
    onServerRunning: @escaping @Sendable (any Channel) async -> Void = { _ in }
  ) -> some ApplicationProtocol {
    let router = Router(context: ProfilingRequestContext.self)
    before(router)
    if profilingMiddleware {
      var middleware = ProfilingMiddleware<ProfilingRequestContext>(server: profiler)
      middleware.labelsRequests = labelsRequests
      middleware.instrument = instrument
      router.add(middleware: middleware)
    }
    router.get("/") { _, _ in "hello\n" }
    router.get("/slow") { _, _ in "slow \(exampleHotFunction(milliseconds: 150))\n" }
    router.get("/wait") { _, _ in
      try await Task.sleep(for: .milliseconds(100))
      return "waited\n"
    }
    // Awaits a 300 ms dependency, then computes 100 ms: three quarters of
    // its time is at the await, which `?profile=wall` and the slow-request
    // wall profile show (docs/tasks.md).
    router.get("/checkout") { _, _ in
      try await exampleDependency(milliseconds: 300)
      return "checkout \(exampleHotFunction(milliseconds: 100))\n"
    }
    router.get("/alloc") { _, _ in "alloc \(exampleAllocate(count: 100_000))\n" }
    // Awaits twice, then burns: its cpu profile shows this closure and the
    // router above the hot loop (async stacks).
    router.get("/awaits") { _, _ in
      try await Task.sleep(for: .milliseconds(1))
      await Task.yield()
      return "awaits \(exampleHotFunction(milliseconds: 20))\n"
    }
    // Two endpoints with a hot function each, after an await: labels tell
    // them apart in a process profile (`-tagfocus route=/a`), and
    // `/a?profile=cpu` holds only /a's work. `?ms=N` burns N ms (default 50).
    router.get("/a") { request, _ in
      try await Task.sleep(for: .milliseconds(1))
      return "a \(fnA(milliseconds: request.uri.queryParameters.get("ms", as: Int.self) ?? 50))\n"
    }
    router.get("/b") { request, _ in
      try await Task.sleep(for: .milliseconds(1))
      return "b \(fnB(milliseconds: request.uri.queryParameters.get("ms", as: Int.self) ?? 50))\n"
    }
    var logger = Logger(label: "hummingbird-example")
    logger.logLevel = .warning
    return Application(
      router: router,
      configuration: .init(address: .hostname(host, port: port)),
      services: [profiler],
      onServerRunning: onServerRunning,
      logger: logger)
  }
}
