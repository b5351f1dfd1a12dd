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
    app.get("slow") { _ in "slow \(exampleHotFunction(milliseconds: 150))\n" }
    app.get("wait") { _ async throws -> String in
      try await Task.sleep(for: .milliseconds(100))
      return "waited\n"
    }
    app.get("alloc") { _ in "alloc \(exampleAllocate(count: 100_000))\n" }
  }
}
