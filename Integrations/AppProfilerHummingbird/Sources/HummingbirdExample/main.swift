import AppProfilerHummingbird
import Foundation
import Hummingbird

// swift run HummingbirdExample [port] [--no-middleware] [--no-labels]
// (--no-middleware: without the per-request profiling middleware, for the
// latency benchmark in Benchmarks/run.sh middleware-latency; --no-labels:
// the middleware does not label requests, for Benchmarks/run.sh labels)
let arguments = CommandLine.arguments.dropFirst()
let port = arguments.first.flatMap(Int.init) ?? 8080
let profiler = ProfileServer()
let app = HummingbirdExample.makeApplication(
  port: port, profiler: profiler, profilingMiddleware: !arguments.contains("--no-middleware"),
  labelsRequests: !arguments.contains("--no-labels"))
try await app.runService()
