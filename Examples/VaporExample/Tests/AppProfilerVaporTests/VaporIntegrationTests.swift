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

  init(
    host: String = "127.0.0.1", requestProfiling: Bool = true, store useStore: Bool = false, slowRequests: Bool = false
  ) async throws {
    var configuration = ProfileServerConfiguration()
    configuration.directory = directory.path
    configuration.requestProfiling.enabled = requestProfiling
    if useStore { configuration.requestProfiling.store = store.path }
    if slowRequests {
      configuration.flightRecorderSeconds = 10
      configuration.requestProfiling.slowRequestThreshold = .milliseconds(100)
    }
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
  host: String = "127.0.0.1", requestProfiling: Bool = true, store: Bool = false, slowRequests: Bool = false,
  _ body: (RunningVaporExample) async throws -> Void
) async throws {
  let app = try await RunningVaporExample(
    host: host, requestProfiling: requestProfiling, store: store, slowRequests: slowRequests)
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

  /// Issue 35: a slow request's wall profile holds its awaits.
  @Test func slowRequestWallProfileHoldsTheAwait() async throws {
    try await withVaporExample(store: true, slowRequests: true) { app in try await checkSlowRequestWallProfile(app) }
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

  /// A synchronous route (`{ req in … }`, run on the event loop): its
  /// per-request cpu profile holds its own work, and a process profile
  /// labels its samples with its route.
  @Test func synchronousRoutesAreProfiledAndLabelled() async throws {
    try await withVaporExample { app in
      var own: Int64 = 0
      var all: Int64 = 0
      for _ in 0..<3 {
        let answer = try await curl(app.base + "/sync?ms=300&profile=cpu&profile_format=pprof")
        #expect(answer.status == 200 && answer.headers["x-profile-status"]?.hasPrefix("200") == true, "\(answer.headers)")
        let profile = try PprofDecoder().decode([UInt8](answer.body))
        own += share(profile) { names in names.contains { $0.contains("fnSync(") } }
        all += share(profile) { _ in true }
      }
      print("/sync?profile=cpu: fnSync \(own) of \(all) samples")
      #expect(all >= 60 && Double(own) >= 0.8 * Double(all), "\(own) of \(all)")

      let process = try await underLoad(app, routes: ["/sync?ms=20"]) {
        try await curl("http://localhost/profile?mode=cpu&interval=1000&duration=2&format=pprof", socket: app.socket, timeout: 60)
      }
      #expect(process.status == 200)
      let whole = try PprofDecoder().decode([UInt8](process.body))
      let hot = share(whole) { names in names.contains { $0.contains("fnSync(") } }
      let labelled = share(whole) { names in names.contains { $0.contains("fnSync(") } } labelled: { $0["route"] == "/sync" }
      print("fnSync samples labelled route=/sync: \(labelled) of \(hot)")
      #expect(hot >= 100 && Double(labelled) >= 0.95 * Double(hot), "\(labelled) of \(hot)")
    }
  }

  @Test func wallProfilesCountWaiting() async throws {
    try await withVaporExample { app in try await checkWallProfilesCountWaiting(app) }
  }

  @Test func storedProfilesKeepTheBodyAndAreServed() async throws {
    try await withVaporExample(store: true) { app in try await checkStoredProfiles(app) }
  }
}
