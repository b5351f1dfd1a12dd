import AppProfilerHummingbird
import Configuration
import Foundation
import Hummingbird

// swift run HummingbirdExample [port] [--no-middleware] [--no-labels]
// (--no-middleware: without the per-request profiling middleware, for the
// latency benchmark in Benchmarks/run.sh middleware-latency; --no-labels:
// the middleware does not label requests, for Benchmarks/run.sh labels)
let arguments = CommandLine.arguments.dropFirst()
let port = arguments.first.flatMap(Int.init) ?? 8080
// The profiler's settings through swift-configuration, as the app's own
// would be: scoped to `appProfiler`, the environment provider reads the
// APP_PROFILER_* variables (docs/configuration.md).
let config = ConfigReader(provider: EnvironmentVariablesProvider())
let profiler = ProfileServer(config: config.scoped(to: "appProfiler"))
let app = HummingbirdExample.makeApplication(
  port: port, profiler: profiler, profilingMiddleware: !arguments.contains("--no-middleware"),
  labelsRequests: !arguments.contains("--no-labels"))
try await app.runService()
