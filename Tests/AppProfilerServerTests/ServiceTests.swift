import AppProfilerServer
import Foundation
import Logging
import ServiceLifecycle
import Testing

#if canImport(Glibc)
import Glibc
#endif

extension ServerSuite {
  /// The server as a swift-service-lifecycle Service, in this process.
  @Suite struct AsService {
    @Test func runsInAServiceGroupAndCleansUpOnGracefulShutdown() async throws {
      let directory = TemporaryDirectory()
      defer { directory.remove() }
      var configuration = ProfileServerConfiguration()
      configuration.directory = directory.path
      let server = ProfileServer(configuration: configuration, environment: [:])
      let group = ServiceGroup(
        configuration: .init(services: [server], gracefulShutdownSignals: [], logger: Logger(label: "test")))
      let running = Task { try await group.run() }
      var address: ProfileServer.ListeningAddress?
      for _ in 0..<200 where address == nil {
        address = server.address
        if address == nil { try await Task.sleep(for: .milliseconds(10)) }
      }
      let socket = try #require(address?.socketPath)
      let record = "\(directory.path)/app-profiler-\(getpid()).json"
      #expect(FileManager.default.fileExists(atPath: record))
      let answer = try Curl.request(url: "http://localhost/", arguments: ["--unix-socket", socket])
      #expect(answer.status == 200)
      #expect(answer.text.contains("/profile"))
      await group.triggerGracefulShutdown()
      try await running.value
      #expect(server.address == nil)
      #expect(!FileManager.default.fileExists(atPath: socket))
      #expect(!FileManager.default.fileExists(atPath: record))
    }

    @Test func disabledByEnvironment() async throws {
      let server = try await ProfileServer.start(environment: ["APP_PROFILER_ENABLED": "0"])
      #expect(server.address == nil)
      await server.stop()
    }
  }

  /// 503 where this process cannot profile (here: a signal glibc reserves).
  @Suite struct Unavailable {
    @Test func profilingImpossibleIs503() throws {
      try withTestee(environment: ["APP_PROFILER_SIGNAL": "32"]) { testee in
        let answer = try Curl.get(testee, "/profile?duration=0.1", headers: ["Origin: https://www.speedscope.app"])
        #expect(answer.status == 503, "\(answer.status) \(answer.text)")
        #expect(answer.text.contains("cannot be profiled here"))
        #expect(answer.headers["access-control-allow-origin"] == "https://www.speedscope.app")
        // And the profiler is free again afterwards: /threads gets 503 too, not 409.
        #expect(try Curl.get(testee, "/threads").status == 503)
      }
    }
  }
}
