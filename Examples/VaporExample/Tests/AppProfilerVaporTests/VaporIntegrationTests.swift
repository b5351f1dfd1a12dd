import AppProfilerFormats
import AppProfilerVapor
import Foundation
import Testing
import Vapor
import VaporExample

#if canImport(Glibc)
import Glibc
#endif

/// The example app started in-process on an ephemeral port.
final class RunningVaporExample: ExampleUnderTest {
  let directory = TemporaryDirectory()
  let store = TemporaryDirectory()
  let app: Application
  let port: Int
  let host: String

  init(host: String = "127.0.0.1", requestProfiling: Bool = true, store useStore: Bool = false) async throws {
    var configuration = ProfileServerConfiguration()
    configuration.directory = directory.path
    configuration.requestProfiling.enabled = requestProfiling
    if useStore { configuration.requestProfiling.store = store.path }
    // `serve` as the command line, whatever the test runner's arguments are.
    let app = try await Application.make(Environment(name: "testing", arguments: ["vapor"]))
    app.logger.logLevel = .warning
    app.http.server.configuration.hostname = host
    app.http.server.configuration.port = 0
    VaporExample.configure(app, profiler: configuration)
    do {
      try await app.startup()
    } catch {
      try? await app.asyncShutdown()
      throw error
    }
    self.app = app
    self.host = host
    guard let port = app.http.server.shared.localAddress?.port else {
      try? await app.asyncShutdown()
      throw CancellationError()
    }
    self.port = port
  }

  var base: String { "http://\(host):\(port)" }
  var socket: String { socketPath(directory.path) }
  var storePath: String { store.path }

  func shutdown() async throws {
    await app.server.shutdown()
    try await app.asyncShutdown()
  }

  deinit {
    directory.remove()
    store.remove()
  }
}

func withVaporExample(
  host: String = "127.0.0.1", requestProfiling: Bool = true, store: Bool = false,
  _ body: (RunningVaporExample) async throws -> Void
) async throws {
  let app = try await RunningVaporExample(host: host, requestProfiling: requestProfiling, store: store)
  do {
    try await body(app)
  } catch {
    try? await app.shutdown()
    throw error
  }
  try await app.shutdown()
}

/// Serialized: one profiling session per process at a time.
@Suite(.serialized) struct VaporIntegrationTests {
  @Test func serverStartsAfterBootAndCleansUpOnShutdown() async throws {
    let app = try await RunningVaporExample()
    let record = discoveryRecordPath(app.directory.path)
    #expect(await waitFor(10) { FileManager.default.fileExists(atPath: record) })
    #expect(FileManager.default.fileExists(atPath: app.socket))

    try await checkProfileWhileServing(app)

    try await app.shutdown()
    #expect(!FileManager.default.fileExists(atPath: record), "discovery record left behind")
    #expect(!FileManager.default.fileExists(atPath: app.socket), "socket left behind")
  }

  /// A server the app made (e.g. from a swift-configuration reader) is the
  /// one registered, started after boot and stopped on shutdown.
  @Test func enableWithTheAppsServer() async throws {
    let directory = TemporaryDirectory()
    defer { directory.remove() }
    var configuration = ProfileServerConfiguration()
    configuration.directory = directory.path
    let app = try await Application.make(Environment(name: "testing", arguments: ["vapor"]))
    app.logger.logLevel = .warning
    app.http.server.configuration.port = 0
    let server = ProfileServer(configuration: configuration, environment: [:])
    #expect(app.profiler.enable(server: server) === server)
    #expect(app.profiler.enable() === server && app.profiler.server === server)
    do {
      try await app.startup()
      #expect(await waitFor(10) { server.address != nil })
      let socket = try #require(server.address?.socketPath)
      #expect(FileManager.default.fileExists(atPath: socket))
      await app.server.shutdown()
      try await app.asyncShutdown()
      #expect(server.address == nil && !FileManager.default.fileExists(atPath: socket))
    } catch {
      try? await app.asyncShutdown()
      throw error
    }
  }

  @Test func perRequestProfiles() async throws {
    try await withVaporExample { app in try await checkPerRequestProfiles(app) }
  }

  @Test func ignoredWhenOffOrFromANonLoopbackClient() async throws {
    try await withVaporExample(requestProfiling: false) { off in
      let answer = try await curl(off.base + "/slow?profile=cpu")
      #expect(answer.text.hasPrefix("slow ") && answer.headers["x-profile-status"] == nil)
    }
    try await withVaporExample(host: "0.0.0.0") { open in try await checkNonLoopbackClientIgnored(port: open.port) }
  }

  /// Route labels from the global middleware (Vapor routes first) and
  /// task-scoped per-request profiles, as for Hummingbird.
  @Test func routeLabelsAndTaskScopedProfiles() async throws {
    try await withVaporExample { app in try await checkRouteLabelsAndTaskScopedProfiles(app) }
  }

  @Test func storedProfilesKeepTheBodyAndAreServed() async throws {
    try await withVaporExample(store: true) { app in try await checkStoredProfiles(app) }
  }
}
