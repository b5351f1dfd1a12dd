import AppProfiler
import AppProfilerFormats
import AppProfilerOTLP
import Foundation
import Logging
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The repository's Tests/Support (the receiver on the official messages).
private let supportDirectory = URL(fileURLWithPath: #filePath)
  .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
  .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Tests/Support").path

/// Log lines of the exporter, for "reported once".
final class CollectedLog: LogHandler, @unchecked Sendable {
  let lines = Mutex<[(Logger.Level, String)]>([])
  var metadata: Logger.Metadata = [:]
  var logLevel: Logger.Level = .trace
  subscript(metadataKey key: String) -> Logger.Metadata.Value? {
    get { metadata[key] }
    set { metadata[key] = newValue }
  }
  func log(event: LogEvent) {
    lines.withLock { $0.append((event.level, "\(event.message)")) }
  }
}

private func threadCPUNanoseconds() -> UInt64 {
  var now = timespec()
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now)
  return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
}

@inline(never) func otlpHotWork(_ nanoseconds: UInt64) -> Int {
  let end = threadCPUNanoseconds() + nanoseconds
  var spins = 0
  while threadCPUNanoseconds() < end { spins &+= 1 }
  return spins
}

@inline(never) func otlpColdWork(_ nanoseconds: UInt64) -> Int {
  let end = threadCPUNanoseconds() + nanoseconds
  var spins = 0
  while threadCPUNanoseconds() < end { spins &+= 1 }
  return spins
}

@Suite(.serialized) struct OTLPExporterTests {
  static let trace = "0af7651916cd43dd8448eb211c80319c"
  static let span = "b7ad6b7169203331"

  /// Only OpenTelemetry's variables set; a receiver on the official
  /// messages, down for its first two requests: every window arrives,
  /// 3 : 1 within ±8 pp, file:line on the functions, links equal to the
  /// span's ids, the resource as set, and the outage logged once.
  @Test func exportsToAnOTLPReceiverAndSurvivesItsOutage() throws {
    let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("otlp-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: scratch) }
    let out = scratch + "/requests.jsonl"
    let receiver = Process()
    receiver.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    receiver.arguments = ["python3", supportDirectory + "/otlp_receiver.py", out, "2"]
    let pipe = Pipe()
    receiver.standardOutput = pipe
    // Not this process's output (the test runner waits for every writer of
    // it): a file of its own, read when the receiver does not start.
    let receiverErrors = scratch + "/receiver.err"
    FileManager.default.createFile(atPath: receiverErrors, contents: nil)
    receiver.standardError = FileHandle(forWritingAtPath: receiverErrors)
    try receiver.run()
    defer {
      kill(receiver.processIdentifier, SIGKILL)
      receiver.waitUntilExit()
    }
    // "PORT <n>\n", however the pipe splits it; empty at end of file.
    var first = ""
    while !first.contains("\n") {
      let chunk = pipe.fileHandleForReading.availableData
      if chunk.isEmpty { break }
      first += String(decoding: chunk, as: UTF8.self)
    }
    let line = first.split(separator: "\n").first { $0.hasPrefix("PORT ") }
    let port = try #require(
      line.flatMap { Int($0.dropFirst(5).trimmingCharacters(in: .whitespaces)) },
      "the receiver did not start: \(first) \((try? String(contentsOfFile: receiverErrors, encoding: .utf8)) ?? "")")

    let environment = [
      "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:\(port)",
      "OTEL_EXPORTER_OTLP_HEADERS": "x-api-key=s3cret%20key",
      "OTEL_SERVICE_NAME": "otlp-test",
      "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=ci,service.version=1.2",
      "APP_PROFILER_OTLP_INTERVAL": "1",
    ]
    var configuration = try #require(try OTLPConfiguration.fromEnvironment(environment))
    #expect(configuration.endpoint == "http://127.0.0.1:\(port)/v1development/profiles")
    configuration.cpuInterval = .milliseconds(2)  // perf events, randomized: more samples per window
    let log = CollectedLog()
    let exporter = OTLPExporter(configuration: configuration, logger: Logger(label: "otlp-test") { _ in log })

    // 3 : 1 of CPU time in random-length slices (no period to alias with),
    // inside a span: its labels give the samples their link.
    let stop = Atomic<Bool>(false)
    let worker = Thread {
      Profiler.withLabels(["trace_id": Self.trace, "span_id": Self.span, "route": "/otlp"]) {
        var random = SystemRandomNumberGenerator()
        while !stop.load(ordering: .relaxed) {
          let slice = UInt64.random(in: 200_000...1_800_000, using: &random)
          _ = otlpHotWork(slice * 3)
          _ = otlpColdWork(slice)
        }
      }
    }
    worker.start()
    try exporter.start()
    // Two refused requests (1 s, then 2 s of backoff), then the queue drains.
    let deadline = Date().addingTimeInterval(20)
    var accepted: [[String: Any]] = []
    while Date() < deadline {
      usleep(500_000)
      let text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
      accepted = text.split(separator: "\n").compactMap {
        try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
      }
      if accepted.count >= 6 { break }
    }
    exporter.stop()
    stop.store(true, ordering: .relaxed)
    let statistics = exporter.statistics
    print("otlp: \(accepted.count) requests accepted, statistics \(statistics)")
    #expect(accepted.count >= 4, "\(accepted.count) requests")
    #expect(statistics.failedAttempts >= 2 && statistics.rejected == 0)

    var hot = 0.0
    var cold = 0.0
    for request in accepted {
      let resource = request["resource"] as? [String: Any] ?? [:]
      #expect(resource["service.name"] as? String == "otlp-test")
      #expect(resource["deployment.environment"] as? String == "ci")
      #expect((resource["process.pid"] as? NSNumber)?.int32Value == getpid())
      #expect(resource["host.name"] as? String != nil && resource["process.runtime.name"] as? String == "swift")
      let headers = request["headers"] as? [String: String] ?? [:]
      #expect(headers["x-api-key"] == "s3cret key" && headers["content-encoding"] == "gzip")
      let profiles = request["profiles"] as? [[String: Any]] ?? []
      #expect(profiles.map { $0["sample_type"] as? String } == ["samples/count", "cpu/nanoseconds"])
      guard let cpu = profiles.last else { continue }
      let byFunction = cpu["by_function"] as? [String: Int] ?? [:]
      for (name, value) in byFunction {
        if name.contains("otlpHotWork") { hot += Double(value) }
        if name.contains("otlpColdWork") { cold += Double(value) }
      }
      // The span's samples link to it.
      let links = cpu["links"] as? [[String: Any]] ?? []
      #expect(!links.isEmpty && links.allSatisfy { $0["trace_id"] as? String == Self.trace && $0["span_id"] as? String == Self.span })
      #expect((cpu["attributes"] as? [String: [String]])?["route"]?.contains("/otlp") == true)
      // file:line of the hot function.
      let frames = cpu["frames"] as? [[String: Any]] ?? []
      if let frame = frames.first(where: { ($0["name"] as? String)?.contains("otlpHotWork") == true }) {
        #expect((frame["file"] as? String)?.hasSuffix("OTLPExporterTests.swift") == true, "\(frame)")
        #expect(((frame["line"] as? NSNumber)?.intValue ?? 0) > 0)
      }
    }
    let share = hot / max(1, hot + cold)
    print("otlp: hot \(hot) cold \(cold) share \(share)")
    #expect(abs(share - 0.75) <= 0.08, "3 : 1 within ±8 pp: \(share)")
    // The outage: one error line for the streak, one line when it ended.
    let lines = log.lines.withLock { $0 }
    let errors = lines.filter { $0.0 == .error }
    #expect(errors.count == 1, "\(errors)")
    #expect(lines.contains { $0.1.contains("again") }, "\(lines)")
  }

  @Test func configurationFollowsOpenTelemetrysVariables() throws {
    #expect(try OTLPConfiguration.fromEnvironment([:]) == nil)
    let exact = try #require(
      try OTLPConfiguration.fromEnvironment([
        "OTEL_EXPORTER_OTLP_PROFILES_ENDPOINT": "https://c.example/custom", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318",
      ]))
    #expect(exact.endpoint == "https://c.example/custom", "the signal's endpoint is used as is")
    let named = try #require(try OTLPConfiguration.fromEnvironment([
      "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318/", "OTEL_RESOURCE_ATTRIBUTES": "service.name=from-attributes",
    ]))
    #expect(named.endpoint == "http://x:4318/v1development/profiles")
    #expect(named.resourceAttributes["service.name"] == "from-attributes")
    #expect(throws: OTLPConfiguration.EnvironmentError.self) {
      try OTLPConfiguration.fromEnvironment(["OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"])
    }
    #expect(throws: OTLPConfiguration.EnvironmentError.self) {
      try OTLPConfiguration.fromEnvironment(["OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_EXPORTER_OTLP_HEADERS": "novalue"])
    }
  }
}
