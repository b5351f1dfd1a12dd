import AppProfilerHummingbird
import Foundation
import Hummingbird

// swift run HummingbirdExample [port]
let port = CommandLine.arguments.dropFirst().first.flatMap(Int.init) ?? 8080
let profiler = ProfileServer()
let app = HummingbirdExample.makeApplication(port: port, profiler: profiler)
try await app.runService()
