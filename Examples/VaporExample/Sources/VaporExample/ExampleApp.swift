import AppProfilerVapor
import Foundation
import Synchronization
import Vapor

/// A small service to profile: a CPU-heavy route, a blocking one and an
/// allocating one. `swift run VaporExample serve` serves it on
/// 127.0.0.1:8080 with the profile server on its Unix socket; add
/// `APP_PROFILER_REQUEST_PROFILING=1` and try
/// `curl 'http://127.0.0.1:8080/slow?profile=cpu' -o slow.html`.
public enum VaporExample {
  /// The README's example: `app.profiler.enable(…)` and the middleware.
  public static func configure(_ app: Application, profiler configuration: ProfileServerConfiguration = ProfileServerConfiguration()) {
    app.profiler.enable(configuration)
    app.middleware.use(app.profiler.middleware)
    app.get { _ in "hello\n" }
    // Asynchronous closures run in a task created from the request's;
    // synchronous ones on the event loop, where the middleware carries the
    // request's labels and per-request profile for the call (docs/labels.md).
    app.get("slow") { _ async in "slow \(exampleHotFunction(milliseconds: 150))\n" }
    app.get("sync") { request in "sync \(fnSync(milliseconds: request.query[Int.self, at: "ms"] ?? 50))\n" }
    app.get("wait") { _ async throws -> String in
      try await Task.sleep(for: .milliseconds(100))
      return "waited\n"
    }
    // Awaits a 300 ms dependency, then computes 100 ms: see the Hummingbird example.
    app.get("checkout") { _ async throws -> String in
      try await exampleDependency(milliseconds: 300)
      return "checkout \(exampleHotFunction(milliseconds: 100))\n"
    }
    app.get("alloc") { _ async in "alloc \(exampleAllocate(count: 100_000))\n" }
    // Two endpoints with a hot function each, after an await (`?ms=N`
    // burns N ms, default 50): see the Hummingbird example.
    app.get("a") { request async throws -> String in
      try await Task.sleep(for: .milliseconds(1))
      return "a \(fnA(milliseconds: request.query[Int.self, at: "ms"] ?? 50))\n"
    }
    app.get("b") { request async throws -> String in
      try await Task.sleep(for: .milliseconds(1))
      return "b \(fnB(milliseconds: request.query[Int.self, at: "ms"] ?? 50))\n"
    }
  }
}
