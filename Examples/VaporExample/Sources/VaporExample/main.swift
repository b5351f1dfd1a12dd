import AppProfilerPyroscope
import AppProfilerVapor
import Vapor

// swift run VaporExample serve [--port 8080]
var environment = try Environment.detect()
let app = try await Application.make(environment)
VaporExample.configure(app)
// With APP_PROFILER_PYROSCOPE_URL set, push a cpu profile every 15 s.
let exporter = PyroscopeExporter.fromEnvironment(logger: app.logger)
try exporter?.start()
do {
  try await app.execute()
} catch {
  exporter?.stop()
  try? await app.asyncShutdown()
  throw error
}
exporter?.stop()
try await app.asyncShutdown()
