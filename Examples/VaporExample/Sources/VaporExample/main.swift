import AppProfilerVapor
import Vapor

// swift run VaporExample serve [--port 8080]
var environment = try Environment.detect()
let app = try await Application.make(environment)
VaporExample.configure(app)
do {
  try await app.execute()
} catch {
  try? await app.asyncShutdown()
  throw error
}
try await app.asyncShutdown()
