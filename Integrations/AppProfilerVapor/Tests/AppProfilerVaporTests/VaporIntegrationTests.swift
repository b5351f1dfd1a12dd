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
final class RunningVaporExample: Sendable {
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

    let traffic = Task { () -> Int in
      var served = 0
      for _ in 0..<20 {
        if (try? await curl(app.base + "/"))?.status == 200 { served += 1 }
      }
      return served
    }
    let profile = try await curl("http://localhost/profile?mode=cpu&duration=1&format=pprof", socket: app.socket)
    let served = await traffic.value
    #expect(profile.status == 200, "\(profile.text)")
    #expect(try PprofDecoder().decode([UInt8](profile.body)).mode == .cpu)
    #expect(served == 20)

    try await app.shutdown()
    #expect(!FileManager.default.fileExists(atPath: record), "discovery record left behind")
    #expect(!FileManager.default.fileExists(atPath: app.socket), "socket left behind")
  }

  @Test func perRequestProfiles() async throws {
    try await withVaporExample { app in
      let plain = try await curl(app.base + "/slow")
      #expect(plain.status == 200 && plain.text.hasPrefix("slow "))
      #expect(plain.headers["x-profile-status"] == nil)

      let html = try await curl(app.base + "/slow?profile=cpu")
      #expect(html.status == 200)
      #expect(html.headers["content-type"] == "text/html; charset=utf-8")
      #expect(html.text.contains("id=\"profile-data\"") && html.text.contains("exampleHotFunction"))

      let json = try await curl(app.base + "/slow?profile=cpu&profile_format=speedscope")
      #expect(json.headers["content-type"] == "application/json")
      let file = app.store.path + "/slow.speedscope.json"
      try json.body.write(to: URL(fileURLWithPath: file))
      let check = try validateSpeedscope(file)
      #expect(check.ok, "\(check.output)")
      let top = TopFunctions(try SpeedscopeDecoder().decode([UInt8](json.body)))
      #expect(top.entries.prefix(3).contains { $0.name.contains("exampleHotFunction") }, "\(top.render(limit: 5))")

      let alloc = try await curl(app.base + "/alloc?profile_format=speedscope&profile_interval=65536", headers: ["X-Profile: alloc"])
      #expect(alloc.status == 200)
      #expect(alloc.text.contains("ExampleRecord") && alloc.text.contains("\"unit\":\"bytes\""))

      async let first = curl(app.base + "/slow?profile=cpu")
      async let second = curl(app.base + "/slow?profile=cpu")
      let answers = try await [first, second]
      #expect(answers.filter { $0.text.contains("id=\"profile-data\"") }.count == 1)
      #expect(answers.contains { $0.text.hasPrefix("slow ") && $0.headers["x-profile-status"]?.hasPrefix("409") == true })
    }
  }

  @Test func ignoredWhenOffOrFromANonLoopbackClient() async throws {
    try await withVaporExample(requestProfiling: false) { off in
      let answer = try await curl(off.base + "/slow?profile=cpu")
      #expect(answer.text.hasPrefix("slow ") && answer.headers["x-profile-status"] == nil)
    }
    guard let address = nonLoopbackAddress() else {
      Issue.record("this machine has no non-loopback IPv4 address to act as a remote client")
      return
    }
    try await withVaporExample(host: "0.0.0.0") { open in
      let remote = try await curl("http://\(address):\(open.port)/slow?profile=cpu")
      #expect(remote.status == 200 && remote.text.hasPrefix("slow "), "a non-loopback client got a profile")
      let local = try await curl("http://127.0.0.1:\(open.port)/slow?profile=cpu")
      #expect(local.text.contains("id=\"profile-data\""))
    }
  }

  @Test func storedProfilesKeepTheBodyAndAreServed() async throws {
    try await withVaporExample(store: true) { app in
      let answer = try await curl(app.base + "/slow?profile=cpu&profile_format=speedscope")
      #expect(answer.text.hasPrefix("slow "), "the body was replaced")
      let path = try #require(answer.headers["x-profile-path"])
      #expect(FileManager.default.fileExists(atPath: path))
      let check = try validateSpeedscope(path)
      #expect(check.ok, "\(check.output)")
      let name = (path as NSString).lastPathComponent
      let served = try await curl("http://localhost/profiles/\(name)", socket: app.socket)
      #expect(served.status == 200 && served.body == FileManager.default.contents(atPath: path))
    }
  }
}
