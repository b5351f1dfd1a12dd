import AppProfilerFormats
import AppProfilerHummingbird
import Foundation
import Hummingbird
import HummingbirdExample
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A running example app: the Hummingbird application with the profile
/// server among its services, in this process, stopped by graceful shutdown.
final class RunningExample: Sendable {
  let directory: TemporaryDirectory
  let store: TemporaryDirectory
  let group: ServiceGroup
  let task: Task<Void, any Error>
  let port: Int
  let host: String

  init(host: String = "127.0.0.1", requestProfiling: Bool = true, store useStore: Bool = false) async throws {
    directory = TemporaryDirectory()
    store = TemporaryDirectory()
    var configuration = ProfileServerConfiguration()
    configuration.directory = directory.path
    configuration.requestProfiling.enabled = requestProfiling
    if useStore { configuration.requestProfiling.store = store.path }
    let profiler = ProfileServer(configuration: configuration, environment: [:])
    let boundPort = Mutex<Int?>(nil)
    let app = HummingbirdExample.makeApplication(host: host, port: 0, profiler: profiler) { channel in
      boundPort.withLock { $0 = channel.localAddress?.port }
    }
    var logger = Logger(label: "test")
    logger.logLevel = .warning
    let group = ServiceGroup(configuration: .init(services: [app], logger: logger))
    self.group = group
    self.host = host
    task = Task { try await group.run() }
    let started = await waitFor(30) { boundPort.withLock { $0 } != nil && FileManager.default.fileExists(atPath: socketPath(configuration.directory!)) }
    guard started, let port = boundPort.withLock({ $0 }) else {
      await group.triggerGracefulShutdown()
      throw CancellationError()
    }
    self.port = port
  }

  var base: String { "http://\(host):\(port)" }
  var socket: String { socketPath(directory.path) }

  func shutdown() async throws {
    await group.triggerGracefulShutdown()
    try await task.value
  }

  deinit {
    directory.remove()
    store.remove()
  }
}

/// Runs `body` against a fresh example app, then shuts it down gracefully
/// (awaited, so the next test can start its own profile server).
func withExample(
  host: String = "127.0.0.1", requestProfiling: Bool = true, store: Bool = false,
  _ body: (RunningExample) async throws -> Void
) async throws {
  let app = try await RunningExample(host: host, requestProfiling: requestProfiling, store: store)
  do {
    try await body(app)
  } catch {
    try? await app.shutdown()
    throw error
  }
  try await app.shutdown()
}

/// Serialized: one profiling session per process at a time.
@Suite(.serialized) struct HummingbirdIntegrationTests {
  @Test func serviceStartsWithTheAppAndCleansUpOnGracefulShutdown() async throws {
    let app = try await RunningExample()
    let record = discoveryRecordPath(app.directory.path)
    #expect(FileManager.default.fileExists(atPath: record))
    #expect(FileManager.default.fileExists(atPath: app.socket))

    // A profile over the socket while the app serves normal traffic.
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
    try await withExample { app in try await perRequestProfiles(app) }
  }

  func perRequestProfiles(_ app: RunningExample) async throws {
    // Without the parameter: the route's own answer.
    let plain = try await curl(app.base + "/slow")
    #expect(plain.status == 200 && plain.text.hasPrefix("slow "))
    #expect(plain.headers["x-profile-status"] == nil)

    // ?profile=cpu: an HTML flame graph whose hot frames include the handler's hot function.
    let html = try await curl(app.base + "/slow?profile=cpu")
    #expect(html.status == 200)
    #expect(html.headers["content-type"] == "text/html; charset=utf-8")
    #expect(html.text.contains("id=\"profile-data\"") && html.text.contains("exampleHotFunction"))

    // speedscope, checked against the file format's schema; the hot function leads.
    let json = try await curl(app.base + "/slow?profile=cpu&profile_format=speedscope")
    #expect(json.headers["content-type"] == "application/json")
    let file = app.store.path + "/slow.speedscope.json"
    try json.body.write(to: URL(fileURLWithPath: file))
    let check = try validateSpeedscope(file)
    #expect(check.ok, "\(check.output)")
    let decoded = try SpeedscopeDecoder().decode([UInt8](json.body))
    let top = TopFunctions(decoded)
    #expect(top.entries.prefix(3).contains { $0.name.contains("exampleHotFunction") }, "\(top.render(limit: 5))")

    // The header works too; alloc mode names the allocated type.
    let alloc = try await curl(app.base + "/alloc?profile_format=speedscope&profile_interval=65536", headers: ["X-Profile: alloc"])
    #expect(alloc.status == 200)
    #expect(alloc.text.contains("ExampleRecord") && alloc.text.contains("\"unit\":\"bytes\""))

    // A bad mode: normal answer, and a header that says why.
    let bad = try await curl(app.base + "/slow?profile=gpu")
    #expect(bad.text.hasPrefix("slow ") && bad.headers["x-profile-status"]?.hasPrefix("400") == true)

    // Two profiled requests at once: one profile, one 409 header with the normal body.
    async let first = curl(app.base + "/slow?profile=cpu")
    async let second = curl(app.base + "/slow?profile=cpu")
    let answers = try await [first, second]
    #expect(answers.filter { $0.text.contains("id=\"profile-data\"") }.count == 1)
    #expect(answers.contains { $0.text.hasPrefix("slow ") && $0.headers["x-profile-status"]?.hasPrefix("409") == true })
  }

  @Test func ignoredWhenOffOrFromANonLoopbackClient() async throws {
    try await withExample(requestProfiling: false) { off in
      let answer = try await curl(off.base + "/slow?profile=cpu")
      #expect(answer.text.hasPrefix("slow ") && answer.headers["x-profile-status"] == nil)
    }

    guard let address = nonLoopbackAddress() else {
      Issue.record("this machine has no non-loopback IPv4 address to act as a remote client")
      return
    }
    try await withExample(host: "0.0.0.0") { open in
      let remote = try await curl("http://\(address):\(open.port)/slow?profile=cpu")
      #expect(remote.status == 200 && remote.text.hasPrefix("slow "), "a non-loopback client got a profile")
      #expect(remote.headers["x-profile-status"] == nil)
      let local = try await curl("http://127.0.0.1:\(open.port)/slow?profile=cpu")
      #expect(local.text.contains("id=\"profile-data\""))
    }
  }

  @Test func storedProfilesKeepTheBodyAndAreServed() async throws {
    try await withExample(store: true) { app in try await storedProfiles(app) }
  }

  func storedProfiles(_ app: RunningExample) async throws {    let answer = try await curl(app.base + "/slow?profile=cpu&profile_format=speedscope")
    #expect(answer.text.hasPrefix("slow "), "the body was replaced")
    let path = try #require(answer.headers["x-profile-path"])
    #expect(path.hasPrefix(app.store.path))
    #expect(FileManager.default.fileExists(atPath: path))
    let check = try validateSpeedscope(path)
    #expect(check.ok, "\(check.output)")
    let name = (path as NSString).lastPathComponent
    let served = try await curl("http://localhost/profiles/\(name)", socket: app.socket)
    #expect(served.status == 200)
    #expect(served.body == FileManager.default.contents(atPath: path))
    let escape = try await curl("http://localhost/profiles/..%2Fetc%2Fpasswd", socket: app.socket)
    #expect(escape.status == 404)
  }
}
