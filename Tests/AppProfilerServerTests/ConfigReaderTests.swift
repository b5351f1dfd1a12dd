#if Configuration
@testable import AppProfilerServer
import Configuration
import Foundation
import Testing

extension ServerSuite {
  /// Issue 21: the server reads its settings from a swift-configuration
  /// `ConfigReader`; the keys are the `APP_PROFILER_*` variables' names.
  @Suite struct ConfigReaderSettings {
    /// One value per setting, as variables.
    static let variables: [String: String] = [
      "APP_PROFILER_ENABLED": "true", "APP_PROFILER_TRANSPORT": "tcp", "APP_PROFILER_HOST": "::1",
      "APP_PROFILER_PORT": "6061", "APP_PROFILER_DIR": "/tmp/app-profiler-config-test", "APP_PROFILER_TOKEN": "s3cret",
      "APP_PROFILER_ALLOW_REMOTE": "1", "APP_PROFILER_MAX_DURATION": "42", "APP_PROFILER_CORS_ORIGIN": "https://x.test",
      "APP_PROFILER_MAX_CONNECTIONS": "7", "APP_PROFILER_SIGNAL": "34", "APP_PROFILER_CPU_ENGINE": "timer",
      "APP_PROFILER_ALLOC_ALWAYS_ON": "yes", "APP_PROFILER_ALLOC_RATE": "65536", "APP_PROFILER_REQUEST_PROFILING": "1",
      "APP_PROFILER_PROFILE_STORE": "/tmp/app-profiler-store-test", "APP_PROFILER_TRACE_LABELS": "true",
      "APP_PROFILER_FLIGHT_RECORDER": "30", "APP_PROFILER_SLOW_REQUEST_MS": "250", "APP_PROFILER_HEAP": "1",
      "APP_PROFILER_ALLOWED_HOSTS": "profiler.test", "APP_PROFILER_LOCKS": "1", "APP_PROFILER_LOCK_RATE_NS": "5000",
    ]

    /// Through `EnvironmentVariablesProvider` scoped to `appProfiler`, every
    /// key finds its variable, and the result is what the variables give.
    @Test func everyKeyIsItsVariable() throws {
      let reader = ConfigReader(provider: EnvironmentVariablesProvider(environmentVariables: Self.variables))
      let fromConfig = try ProfileServerConfiguration().applying(config: reader.scoped(to: "appProfiler"))
      let fromEnvironment = try ProfileServerConfiguration().applyingEnvironment(Self.variables)
      #expect(fromConfig == fromEnvironment)
      // And each setting differs from the default, so no key can go unread.
      let defaults = ProfileServerConfiguration()
      for variable in Self.variables.keys where variable != "APP_PROFILER_ENABLED" {
        var one = Self.variables
        one.removeValue(forKey: variable)
        if variable == "APP_PROFILER_TRANSPORT" { one.removeValue(forKey: "APP_PROFILER_HOST"); one.removeValue(forKey: "APP_PROFILER_PORT") }
        // Two names of one switch: each is checked alone below.
        if variable == "APP_PROFILER_HEAP" || variable == "APP_PROFILER_ALLOC_ALWAYS_ON" {
          one.removeValue(forKey: "APP_PROFILER_HEAP")
          one.removeValue(forKey: "APP_PROFILER_ALLOC_ALWAYS_ON")
        }
        let without = try ProfileServerConfiguration().applying(
          config: ConfigReader(provider: EnvironmentVariablesProvider(environmentVariables: one)).scoped(to: "appProfiler"))
        #expect(without != fromConfig, "\(variable) was not read")
      }
      #expect(fromConfig != defaults)
      for variable in ["APP_PROFILER_HEAP", "APP_PROFILER_ALLOC_ALWAYS_ON"] {
        let alone = try ProfileServerConfiguration().applying(
          config: ConfigReader(provider: EnvironmentVariablesProvider(environmentVariables: [variable: "1"])).scoped(to: "appProfiler"))
        #expect(alone.continuousAllocationSampling, "\(variable) was not read")
      }
      // The socket path (not with tcp above).
      let socket = try ProfileServerConfiguration().applying(
        config: ConfigReader(provider: EnvironmentVariablesProvider(environmentVariables: ["APP_PROFILER_SOCKET": "/tmp/p.sock"]))
          .scoped(to: "appProfiler"))
      #expect(socket.bindAddress == .unixDomainSocket(path: "/tmp/p.sock"))
    }

    /// Every variable the server reads has its key, and docs/configuration.md
    /// lists each key next to its variable.
    @Test func keysCoverEveryVariableAndAreDocumented() throws {
      let code = try String(
        contentsOfFile: repositoryRoot + "/Sources/AppProfilerServer/Configuration/ProfileServerConfiguration+Environment.swift",
        encoding: .utf8)
      let read = Set(code.matches(of: try Regex(#""(APP_PROFILER_[A-Z_]+)""#)).map { String(code[$0.range].dropFirst().dropLast()) })
      #expect(read == Set(ProfileServerConfiguration.configKeys.map(\.variable)))
      #expect(read == Set(Self.variables.keys).union(["APP_PROFILER_SOCKET"]))
      let page = try String(contentsOfFile: repositoryRoot + "/docs/configuration.md", encoding: .utf8)
      for (variable, key, _) in ProfileServerConfiguration.configKeys {
        #expect(page.contains("| `\(key)` | `\(variable)`"), "docs/configuration.md lacks \(key)")
      }
    }

    /// Typed values (a JSON or in-memory source): ints and bools as such.
    @Test func typedValues() throws {
      let reader = ConfigReader(
        provider: InMemoryProvider(values: [
          "transport": "tcp", "port": 0, "maxDuration": 12, "requestProfiling": true, "allocRate": 131072,
        ]))
      let configuration = try ProfileServerConfiguration().applying(config: reader)
      #expect(configuration.maxDuration == .seconds(12))
      #expect(configuration.requestProfiling.enabled)
      #expect(configuration.sessionOptions.allocationSamplingRate == 131072)
      #expect(configuration.bindAddress == .hostname("127.0.0.1", port: 0))
    }

    /// An invalid value is refused with the variable's name, as from the environment.
    @Test func invalidValuesAreNamed() throws {
      for (key, value, variable) in [
        ("port", ConfigValue("eighty", isSecret: false), "APP_PROFILER_PORT"),
        ("enabled", ConfigValue("maybe", isSecret: false), "APP_PROFILER_ENABLED"),
        ("cpuEngine", ConfigValue("fast", isSecret: false), "APP_PROFILER_CPU_ENGINE"),
        ("maxDuration", ConfigValue(.int(0), isSecret: false), "APP_PROFILER_MAX_DURATION"),
      ] {
        let reader = ConfigReader(provider: InMemoryProvider(values: [AbsoluteConfigKey([key]): value]))
        #expect {
          try ProfileServerConfiguration().applying(config: reader)
        } throws: { error in
          (error as? ProfileServerConfiguration.EnvironmentError)?.variable == variable
        }
      }
    }

    /// A real server configured only by a reader: TCP on a free port, a
    /// token; curl needs the token. Variables still override the reader.
    @Test func serverConfiguredByReader() async throws {
      let directory = TemporaryDirectory()
      defer { directory.remove() }
      let reader = ConfigReader(
        provider: InMemoryProvider(values: [
          "appProfiler.transport": "tcp", "appProfiler.port": 0, "appProfiler.dir": .init(.string(directory.path), isSecret: false),
          "appProfiler.token": .init(.string("s3cret"), isSecret: true),
        ]))
      let server = ProfileServer(config: reader.scoped(to: "appProfiler"), environment: [:])
      try await server.startListening()
      let url = try #require(server.address?.host != nil ? server.address?.url : nil, "not listening on TCP")
      #expect(try Curl.request(url: url + "/threads").status == 401)
      #expect(try Curl.request(url: url + "/threads", headers: ["Authorization: Bearer s3cret"]).status == 200)
      await server.stop()

      let off = ProfileServer(config: reader.scoped(to: "appProfiler"), environment: ["APP_PROFILER_ENABLED": "0"])
      try await off.startListening()
      #expect(off.address == nil)
      await off.stop()
    }
  }
}
#endif
