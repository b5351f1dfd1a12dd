@testable import AppProfilerServer
import Testing

/// Pure parsing and configuration: no sockets.
@Suite struct RequestParsingTests {
  @Test func queryDecoding() throws {
    let query = try HTTPQuery(target: "/profile?mode=cpu&duration=0.5&name=a%20b+c&empty")
    #expect(query.path == "/profile")
    #expect(query.value("mode") == "cpu")
    #expect(query.value("name") == "a b c")
    #expect(query.value("empty") == "")
    #expect(throws: HTTPQuery.MalformedQuery.self) { try HTTPQuery(target: "/p?x=%zz") }
  }

  /// The one parser every route uses: its refusals read alike everywhere.
  @Test func queryParametersRefuseUnknownAndRepeatedNamesAndBadValues() throws {
    func parameters(_ target: String, ignoring: Set<String> = []) throws(RequestError) -> QueryParameters {
      let query: HTTPQuery
      do { query = try HTTPQuery(target: target) } catch { fatalError("\(error)") }
      return try QueryParameters(query, allowed: ["seconds", "mode"], ignoring: ignoring)
    }
    func refusal(_ body: () throws -> Void) -> String? {
      do {
        try body()
        return nil
      } catch let error as RequestError {
        #expect(error.status == .badRequest)
        return error.message
      } catch {
        return "\(error)"
      }
    }
    #expect(refusal { _ = try parameters("/x?colour=blue") } == "unknown parameter 'colour': allowed seconds, mode")
    #expect(refusal { _ = try parameters("/x?colour=blue", ignoring: ["gc"]) } == "unknown parameter 'colour': allowed seconds, mode, gc")
    #expect(refusal { _ = try parameters("/x?mode=cpu&mode=wall") } == "parameter 'mode' given more than once")
    #expect(refusal { _ = try parameters("/x?gc=1&gc=2", ignoring: ["gc"]) } == nil, "ignored names are not counted")
    let given = try parameters("/x?seconds=12&mode=wall")
    #expect(try given.integer("seconds", in: 1...3600) == 12)
    #expect(try given.choice("mode", ["cpu": 1, "wall": 2]) == 2)
    #expect(try given.flag("absent") == nil)
    #expect(refusal { _ = try given.integer("seconds", in: 1...10) } == "invalid parameter seconds='12': allowed 1 ... 10")
    #expect(refusal { _ = try given.choice("mode", ["cpu": 1]) } == "invalid parameter mode='wall': allowed cpu")
    #expect(refusal { _ = try given.seconds("seconds", max: .seconds(5)) { "0 < seconds ≤ \($0)" } } == "invalid parameter seconds='12': allowed 0 < seconds ≤ 5")
    #expect(try given.seconds("seconds", max: .seconds(60)) { $0 } == .seconds(12))
    #expect(QueryParameters.parseDuration("250ms") == .milliseconds(250))
    #expect(QueryParameters.parseDuration("2m") == .seconds(120))
    #expect(QueryParameters.parseDuration("1.5") == .milliseconds(1500))
    #expect(QueryParameters.parseDuration("-1") == nil && QueryParameters.parseDuration("soon") == nil)
  }

  @Test func profileRequestDefaultsAndLimits() throws {
    let defaults = try ProfileRequest.parse(HTTPQuery(target: "/profile"), maxDuration: .seconds(300))
    #expect(defaults.mode == .cpu)
    #expect(defaults.duration == .seconds(30))
    #expect(defaults.interval == .milliseconds(10))
    #expect(!defaults.intervalGiven)
    let custom = try ProfileRequest.parse(
      HTTPQuery(target: "/profile?mode=wall&duration=1.5&interval=250"), maxDuration: .seconds(300))
    #expect(custom.mode == .wall)
    #expect(custom.duration == .milliseconds(1500))
    #expect(custom.interval == .microseconds(250))
    #expect(custom.intervalGiven)
    // Alloc mode: `object` is the seed's name; the interval is in bytes.
    let object = try ProfileRequest.parse(
      HTTPQuery(target: "/profile?interval=65536&mode=object"), maxDuration: .seconds(300))
    #expect(object.mode == .alloc)
    #expect(object.allocationRate == 65_536)
    #expect(try ProfileRequest.parse(HTTPQuery(target: "/profile?mode=alloc"), maxDuration: .seconds(300)).allocationRate == nil)
    // The default of 30 s is capped by a smaller maximum.
    let capped = try ProfileRequest.parse(HTTPQuery(target: "/profile"), maxDuration: .seconds(10))
    #expect(capped.duration == .seconds(10))
    #expect(try ProfileRequest.parse(HTTPQuery(target: "/profile"), maxDuration: .seconds(300)).cpuEngine == nil)
    #expect(try ProfileRequest.parse(HTTPQuery(target: "/profile?engine=perf"), maxDuration: .seconds(300)).cpuEngine == .perfEvents)
    #expect(try ProfileRequest.parse(HTTPQuery(target: "/profile?engine=timer"), maxDuration: .seconds(300)).cpuEngine == .posixTimers)
    #expect(try ProfileRequest.parse(HTTPQuery(target: "/profile?engine=auto"), maxDuration: .seconds(300)).cpuEngine == .automatic)
    #expect(try ProfileRequest.parse(HTTPQuery(target: "/profile?engine=ticker"), maxDuration: .seconds(300)).cpuEngine == .cpuTicker)
    for bad in ["duration=nan", "duration=inf", "duration=1e1", "duration=", "interval=99", "interval=1000001", "mode=", "engine=x", "mode=wall&engine=perf"] {
      #expect(throws: RequestError.self) { try ProfileRequest.parse(HTTPQuery(target: "/profile?\(bad)"), maxDuration: .seconds(300)) }
    }
  }

  @Test func environmentOverridesConfiguration() throws {
    let configuration = try ProfileServerConfiguration().applyingEnvironment([
      "APP_PROFILER_TRANSPORT": "tcp", "APP_PROFILER_PORT": "9999", "APP_PROFILER_TOKEN": "t",
      "APP_PROFILER_MAX_DURATION": "60", "APP_PROFILER_CORS_ORIGIN": "", "APP_PROFILER_ENABLED": "0",
      "APP_PROFILER_DIR": "/run/x", "APP_PROFILER_MAX_CONNECTIONS": "4",
    ])
    #expect(configuration.bindAddress == .hostname("127.0.0.1", port: 9999))
    #expect(configuration.continuousAllocationSampling == false)
    let allocation = try ProfileServerConfiguration().applyingEnvironment([
      "APP_PROFILER_ALLOC_ALWAYS_ON": "1", "APP_PROFILER_ALLOC_RATE": "4096",
    ])
    #expect(allocation.continuousAllocationSampling)
    #expect(allocation.sessionOptions.allocationSamplingRate == 4096)
    #expect(ProfileServerConfiguration().requestProfiling.traceLabels == false)
    #expect(try ProfileServerConfiguration().applyingEnvironment(["APP_PROFILER_TRACE_LABELS": "1"]).requestProfiling.traceLabels)
    #expect(throws: ProfileServerConfiguration.EnvironmentError.self) {
      try ProfileServerConfiguration().applyingEnvironment(["APP_PROFILER_TRACE_LABELS": "maybe"])
    }
    #expect(throws: ProfileServerConfiguration.EnvironmentError.self) {
      try ProfileServerConfiguration().applyingEnvironment(["APP_PROFILER_ALLOC_RATE": "0"])
    }
    #expect(configuration.bearerToken == "t")
    #expect(configuration.maxDuration == .seconds(60))
    #expect(configuration.corsOrigins.isEmpty)
    #expect(configuration.enabled == false)
    #expect(configuration.directory == "/run/x")
    #expect(configuration.maxConnections == 4)
    #expect(throws: ProfileServerConfiguration.EnvironmentError.self) {
      try ProfileServerConfiguration().applyingEnvironment(["APP_PROFILER_PORT": "http"])
    }
    #expect(throws: ProfileServerConfiguration.EnvironmentError.self) {
      try ProfileServerConfiguration().applyingEnvironment(["APP_PROFILER_TRANSPORT": "carrier-pigeon"])
    }
    let timers = try ProfileServerConfiguration().applyingEnvironment(["APP_PROFILER_CPU_ENGINE": "timer", "APP_PROFILER_SIGNAL": "34"])
    #expect(timers.sessionOptions.cpuEngine == .posixTimers)
    #expect(timers.sessionOptions.signal == 34)
    #expect(throws: ProfileServerConfiguration.EnvironmentError.self) {
      try ProfileServerConfiguration().applyingEnvironment(["APP_PROFILER_CPU_ENGINE": "fast"])
    }
  }

  @Test func defaultDirectory() {
    let configuration = ProfileServerConfiguration()
    #expect(configuration.resolvedDirectory(environment: [:]) == "/tmp/app_profiler")
    #expect(configuration.resolvedDirectory(environment: ["TMPDIR": "/var/tmp/"]) == "/var/tmp/app_profiler")
    #expect(configuration.resolvedDirectory(environment: ["APP_PROFILER_DIR": "/run/p"]) == "/run/p")
  }

  @Test func bearerTokenComparison() {
    var configuration = ProfileServerConfiguration()
    configuration.bearerToken = "secret"
    let coordinator = ProfileCoordinator(configuration: configuration, logger: .init(label: "test"))
    #expect(coordinator.isAuthorized(["Authorization": "Bearer secret"]))
    #expect(!coordinator.isAuthorized(["Authorization": "Bearer secreT"]))
    #expect(!coordinator.isAuthorized(["Authorization": "Bearer secret2"]))
    #expect(!coordinator.isAuthorized(["Authorization": "Basic secret"]))
    #expect(!coordinator.isAuthorized([:]))
  }
}
