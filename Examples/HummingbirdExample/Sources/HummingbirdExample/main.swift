import AppProfilerHummingbird
import Configuration
import Foundation
import Hummingbird

// swift run HummingbirdExample [port] [--no-middleware] [--no-labels] [--idle-threads N]
// (--no-middleware: without the per-request profiling middleware, for the
// latency benchmark in Benchmarks/run.sh middleware-latency; --no-labels:
// the middleware does not label requests, for Benchmarks/run.sh labels;
// --idle-threads N: N more threads that wait for ever, so the process has
// as many threads as a bigger service, for Benchmarks/run.sh continuous)
let arguments = Array(CommandLine.arguments.dropFirst())
let port = arguments.first.flatMap(Int.init) ?? 8080
if let index = arguments.firstIndex(of: "--idle-threads"), index + 1 < arguments.count, let count = Int(arguments[index + 1]) {
  for _ in 0..<count {
    Thread {
      let condition = NSCondition()
      condition.lock()
      while true { condition.wait() }
    }.start()
  }
}
// The profiler's settings through swift-configuration, as the app's own
// would be: scoped to `appProfiler`, the environment provider reads the
// APP_PROFILER_* variables (docs/configuration.md).
let config = ConfigReader(provider: EnvironmentVariablesProvider())
let profiler = ProfileServer(config: config.scoped(to: "appProfiler"))
let app = HummingbirdExample.makeApplication(
  port: port, profiler: profiler, profilingMiddleware: !arguments.contains("--no-middleware"),
  labelsRequests: !arguments.contains("--no-labels"))
// No line for continuous profiling: built with the traits `OTLP` and
// `Pyroscope`, the profile server pushes when OTEL_EXPORTER_OTLP_ENDPOINT or
// APP_PROFILER_PYROSCOPE_URL is set (docs/continuous-profiling.md).
try await app.runService()
