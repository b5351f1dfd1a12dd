import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// One request of a scraper: path with query, and headers.
struct ScrapeRequest: Hashable, CustomStringConvertible {
  var scraper: String
  var block: String
  var target: String
  var headers: [String]
  var description: String { "\(scraper) \(block): GET \(target)" }
}

/// The requests Grafana Alloy's `pyroscope.scrape` and Parca's
/// `scrape_configs` make for the configurations in
/// docs/continuous-profiling.md, derived as they derive them (their
/// defaults, the blocks the configuration changes, `seconds` for delta
/// blocks: Alloy interval − 1, Parca the interval; the bearer token).
enum ScrapeConfigurations {
  static func page() throws -> String {
    try String(contentsOfFile: repositoryRoot + "/docs/continuous-profiling.md", encoding: .utf8)
  }

  static func fenced(_ language: String, in page: String) -> String {
    let parts = page.components(separatedBy: "```" + language + "\n")
    guard parts.count > 1, let block = parts[1].components(separatedBy: "```").first else { return "" }
    return block
  }

  static func first(_ pattern: String, in text: String) -> String? {
    guard let regex = try? Regex(pattern), let match = text.firstMatch(of: regex), match.count > 1,
      let range = match[1].range
    else { return nil }
    return String(text[range])
  }

  struct Block {
    var enabled: Bool
    var path: String
    var delta: Bool
  }

  /// Alloy's DefaultProfilingConfig (internal/component/pyroscope/scrape).
  static let alloyDefaults: [String: Block] = [
    "memory": Block(enabled: true, path: "/debug/pprof/allocs", delta: false),
    "block": Block(enabled: true, path: "/debug/pprof/block", delta: false),
    "goroutine": Block(enabled: true, path: "/debug/pprof/goroutine", delta: false),
    "mutex": Block(enabled: true, path: "/debug/pprof/mutex", delta: false),
    "process_cpu": Block(enabled: true, path: "/debug/pprof/profile", delta: true),
    "fgprof": Block(enabled: false, path: "/debug/fgprof", delta: true),
    "godeltaprof_memory": Block(enabled: false, path: "/debug/pprof/delta_heap", delta: false),
    "godeltaprof_mutex": Block(enabled: false, path: "/debug/pprof/delta_mutex", delta: false),
    "godeltaprof_block": Block(enabled: false, path: "/debug/pprof/delta_block", delta: false),
  ]

  /// Parca's DefaultScrapeConfig (pkg/config).
  static let parcaDefaults: [String: Block] = [
    "memory": Block(enabled: true, path: "/debug/pprof/allocs", delta: false),
    "block": Block(enabled: true, path: "/debug/pprof/block", delta: false),
    "goroutine": Block(enabled: true, path: "/debug/pprof/goroutine", delta: false),
    "mutex": Block(enabled: true, path: "/debug/pprof/mutex", delta: false),
    "process_cpu": Block(enabled: true, path: "/debug/pprof/profile", delta: true),
  ]

  static func alloy() throws -> [ScrapeRequest] {
    let config = fenced("alloy", in: try page())
    let interval = try #require(first(#"scrape_interval\s*=\s*"(\d+)s""#, in: config).flatMap(Int.init))
    let token = try #require(first(#"bearer_token\s*=\s*"([^"]+)""#, in: config))
    var blocks = alloyDefaults
    for match in config.matches(of: try Regex(#"profile\.(\w+)\s*\{\s*enabled\s*=\s*(true|false)\s*\}"#)) {
      let name = String(config[match[1].range!])
      blocks[name]?.enabled = config[match[2].range!] == "true"
    }
    for match in config.matches(of: try Regex(#"profile\.custom\s+"(\w+)"\s*\{([^}]*)\}"#)) {
      let body = String(config[match[2].range!])
      blocks[String(config[match[1].range!])] = Block(
        enabled: first(#"enabled\s*=\s*(true|false)"#, in: body) == "true",
        path: try #require(first(#"path\s*=\s*"([^"]+)""#, in: body)),
        delta: first(#"delta\s*=\s*(true|false)"#, in: body) == "true")
    }
    return blocks.filter { $0.value.enabled }.map { name, block in
      ScrapeRequest(
        scraper: "alloy", block: name, target: block.path + (block.delta ? "?seconds=\(interval - 1)" : ""),
        headers: ["Authorization: Bearer \(token)", "User-Agent: Alloy/v1.11.0"])
    }
  }

  static func parca() throws -> [ScrapeRequest] {
    let config = fenced("yaml", in: try page())
    let interval = try #require(first(#"scrape_interval:\s*(\d+)s"#, in: config).flatMap(Int.init))
    let token = try #require(first(#"credentials:\s*(\S+)"#, in: config))
    // pprof_config entries: `name:` at one indentation, `key: value` below it.
    var blocks = parcaDefaults
    let lines = config.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    guard let start = lines.firstIndex(where: { $0.trimmingCharacters(in: .whitespaces) == "pprof_config:" }) else {
      Issue.record("no pprof_config in the Parca configuration")
      return []
    }
    let indent = { (line: String) in line.prefix { $0 == " " }.count }
    let base = indent(lines[start])
    var current: String?
    var fields: [String: [String: String]] = [:]
    for line in lines[(start + 1)...] where !line.trimmingCharacters(in: .whitespaces).isEmpty {
      guard indent(line) > base else { break }
      let text = line.trimmingCharacters(in: .whitespaces)
      if text.hasSuffix(":") {
        current = String(text.dropLast())
        fields[current!, default: [:]] = [:]
      } else if let current, let colon = text.firstIndex(of: ":") {
        fields[current]![String(text[..<colon])] = text[text.index(after: colon)...].trimmingCharacters(in: .whitespaces)
      }
    }
    for (name, values) in fields {
      let defaults = blocks[name]
      blocks[name] = Block(
        enabled: values["enabled"].map { $0 == "true" } ?? true,
        path: values["path"] ?? defaults?.path ?? "",
        delta: values["delta"].map { $0 == "true" } ?? defaults?.delta ?? false)
    }
    return blocks.filter { $0.value.enabled }.map { name, block in
      ScrapeRequest(
        scraper: "parca", block: name, target: block.path + (block.delta ? "?seconds=\(interval)" : ""),
        headers: ["Authorization: Bearer \(token)", "User-Agent: parca/0.24"])
    }
  }
}

extension ServerSuite {
  /// Issue 20: the scrape contract. docs/continuous-profiling.md's Alloy and
  /// Parca configurations, request by request, against the TCP listener
  /// while on-demand cpu and wall profiles (at other intervals) run.
  @Suite struct ContinuousProfiling {
    @Test func documentedConfigurationsParse() throws {
      let alloy = try ScrapeConfigurations.alloy()
      let parca = try ScrapeConfigurations.parca()
      #expect(
        Set(alloy.map(\.target))
          == ["/debug/pprof/profile?seconds=14", "/debug/pprof/allocs", "/debug/pprof/goroutine", "/debug/pprof/wall?seconds=14"])
      #expect(
        Set(parca.map(\.target))
          == ["/debug/pprof/profile?seconds=15", "/debug/pprof/allocs", "/debug/pprof/goroutine", "/debug/pprof/wall?seconds=15"])
    }

    @Test func everyScrapeIsServedWhileOnDemandProfilesRun() throws {
      let requests = try ScrapeConfigurations.alloy() + ScrapeConfigurations.parca()
      let token = try #require(ScrapeConfigurations.first(#"bearer_token\s*=\s*"([^"]+)""#, in: ScrapeConfigurations.page()))
      let scratch = TemporaryDirectory()
      defer { scratch.remove() }
      try withTestee(arguments: ["--tcp", "--token", token], environment: ["APP_PROFILER_ALLOC_ALWAYS_ON": "1"]) { testee in
        // On-demand profiles first, at intervals the scrapes do not use.
        let onDemand = Answers()
        let group = DispatchGroup()
        for target in ["/profile?mode=cpu&duration=20&interval=5000&format=pprof", "/profile?mode=wall&duration=20&format=pprof"] {
          group.enter()
          Thread.detachNewThread {
            onDemand.set(target, try? Curl.request(url: testee.address + target, headers: ["Authorization: Bearer \(token)"]))
            group.leave()
          }
        }
        usleep(700_000)
        let scrapes = Answers()
        for request in requests {
          group.enter()
          Thread.detachNewThread {
            scrapes.set(request.description, try? Curl.request(url: testee.address + request.target, headers: request.headers))
            group.leave()
          }
        }
        #expect(group.wait(timeout: .now() + 90) == .success)
        for request in requests {
          let answer = scrapes.get(request.description)
          #expect(answer?.status == 200, "\(request): \(answer?.status ?? -1) \(answer?.text.prefix(300) ?? "")")
          guard let answer, answer.status == 200 else { continue }
          let file = scratch.path + "/\(request.scraper)-\(request.block).pb.gz"
          try answer.body.write(to: URL(fileURLWithPath: file))
          let read = try goPprof(["-raw", file], scratch: scratch.path)
          #expect(read.status == 0, "\(request): go tool pprof: \(read.error.suffix(500))")
          switch request.block {
          case "process_cpu":
            // It read the on-demand sampler (5 ms) instead of getting 409.
            #expect(read.output.contains("Period: 5000000"), "\(request): \(read.output.prefix(400))")
            #expect(read.output.contains("testeeHotLoop"), "\(request)")
          case "wall":
            #expect(read.output.contains("Period: 1000000"), "\(request): \(read.output.prefix(400))")
          case "memory":
            #expect(read.output.contains("alloc_space"), "\(request)")
          case "goroutine":
            #expect(read.output.contains("testee-blocked") || read.output.contains("testeeHotLoop"), "\(request)")
          default:
            break
          }
        }
        for (target, answer) in onDemand.all {
          #expect(answer?.status == 200, "on-demand \(target): \(answer?.status ?? -1)")
        }
        #expect(testee.isAlive)
      }
    }

    /// Their default configurations also ask for block and mutex profiles
    /// (cumulative, no `seconds`): with lock sampling off, valid and empty
    /// at once, saying how to turn it on; Go's parameters accepted.
    @Test func blockAndMutexAreEmptyProfilesWhileLockSamplingIsOff() throws {
      let scratch = TemporaryDirectory()
      defer { scratch.remove() }
      try withTestee(arguments: ["--tcp"]) { testee in
        for target in ["/debug/pprof/block", "/debug/pprof/mutex?debug=0", "/debug/pprof/block?gc=1"] {
          let started = Date()
          let answer = try Curl.request(url: testee.address + target)
          #expect(answer.status == 200, "\(target): \(answer.text)")
          #expect(Date().timeIntervalSince(started) < 5)
          let file = scratch.path + "/contention.pb.gz"
          try answer.body.write(to: URL(fileURLWithPath: file))
          let read = try goPprof(["-raw", file], scratch: scratch.path)
          #expect(read.status == 0, "\(target): \(read.error)")
          // Go's sample types, and no sample between their header and the locations.
          #expect(read.output.contains("Samples:\ncontentions/count delay/nanoseconds[dflt]\nLocations"), "\(read.output)")
          #expect(read.output.contains("APP_PROFILER_LOCKS=1"), "the profile says how to turn it on")
        }
        #expect(try Curl.request(url: testee.address + "/debug/pprof/mutex?rate=1").status == 400)
      }
    }
  }
}

/// Answers of concurrent requests, by name.
final class Answers: @unchecked Sendable {
  private let lock = NSLock()
  private var answers: [String: HTTPAnswer?] = [:]

  func set(_ name: String, _ answer: HTTPAnswer?) {
    lock.lock()
    answers[name] = answer
    lock.unlock()
  }

  func get(_ name: String) -> HTTPAnswer? {
    lock.lock()
    defer { lock.unlock() }
    return answers[name] ?? nil
  }

  var all: [(String, HTTPAnswer?)] {
    lock.lock()
    defer { lock.unlock() }
    return answers.map { ($0.key, $0.value) }
  }
}

extension ServerSuite {
  /// Issue 20: the flight recorder over HTTP and the CLI.
  @Suite struct FlightRecorderEndpoint {
    @Test func lastSecondsAtOnce() throws {
      let scratch = TemporaryDirectory()
      defer { scratch.remove() }
      try withTestee(environment: ["APP_PROFILER_FLIGHT_RECORDER": "10"]) { testee in
        usleep(3_500_000)
        var times: [Double] = []
        var last: HTTPAnswer?
        for _ in 0..<3 {
          let started = Date()
          last = try Curl.get(testee, "/debug/pprof/flight?seconds=5")
          times.append(Date().timeIntervalSince(started))
        }
        let answer = try #require(last)
        #expect(answer.status == 200, "\(answer.text.prefix(300))")
        let median = times.sorted()[1]
        print("flight endpoint: \(times.map { Int($0 * 1000) }) ms (curl, including its start)")
        #expect(median < 0.2, "\(times)")
        let file = scratch.path + "/flight.pb.gz"
        try answer.body.write(to: URL(fileURLWithPath: file))
        let read = try goPprof(["-raw", file], scratch: scratch.path)
        #expect(read.status == 0, "\(read.error)")
        #expect(read.output.contains("testeeHotLoop") && read.output.contains("Period: 52631578"), "\(read.output.prefix(500))")
        let wall = try Curl.get(testee, "/debug/pprof/flight?mode=wall")
        #expect(wall.status == 200)
        #expect(try Curl.get(testee, "/debug/pprof/flight?mode=alloc").status == 400)
        #expect(try Curl.get(testee, "/debug/pprof/flight?seconds=0").status == 400)
        // An on-demand profile at another interval runs next to it.
        #expect(try Curl.get(testee, "/profile?duration=0.5&interval=2000").status == 200)

        // The CLI: --last, converted to the file's format.
        let html = scratch.path + "/last.html"
        let cli = try AppProfilerServerTests.cli(["record", testee.address, "--last", "5s", "-o", html])
        #expect(cli.status == 0, "\(cli.error)")
        let page = (try? String(contentsOfFile: html, encoding: .utf8)) ?? ""
        #expect(page.contains("id=\"profile-data\"") && page.contains("testeeHotLoop"))
        let bad = try AppProfilerServerTests.cli(["record", testee.address, "--last", "soon"])
        #expect(bad.status == 64 && bad.error.contains("--last"), "\(bad.error)")
      }
      // Off: 400 saying how to turn it on.
      try withTestee { testee in
        let off = try Curl.get(testee, "/debug/pprof/flight")
        #expect(off.status == 400 && off.text.contains("APP_PROFILER_FLIGHT_RECORDER"), "\(off.text)")
      }
    }
  }
}
