import AppProfiler
import AppProfilerFormats
import AppProfilerOTLP
import AppProfilerServer
import Foundation
import Logging
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The repository's Tests/Support (receivers of Pyroscope's ingest API and
/// of OTLP on the official messages).
private let supportDirectory = URL(fileURLWithPath: #filePath)
  .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
  .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Tests/Support").path

/// A receiver script run as a child process; its port from "PORT n".
private final class Receiver {
  let process = Process()
  let port: Int

  init(_ script: String, _ arguments: [String]) throws {
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["python3", supportDirectory + "/" + script] + arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = FileHandle(forWritingAtPath: "/dev/null")
    try process.run()
    var first = ""
    while !first.contains("\n") {
      let chunk = pipe.fileHandleForReading.availableData
      if chunk.isEmpty { break }
      first += String(decoding: chunk, as: UTF8.self)
    }
    guard let port = first.split(separator: " ").last.flatMap({ Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) })
    else {
      kill(process.processIdentifier, SIGKILL)
      throw ReceiverError(output: first)
    }
    self.port = port
  }

  struct ReceiverError: Error { var output: String }

  /// SIGKILL: children of the test runner inherit its blocked SIGTERM.
  func stop() {
    kill(process.processIdentifier, SIGKILL)
    process.waitUntilExit()
  }
}

/// JSON lines of a receiver's output file.
private func jsonLines(_ path: String) -> [[String: Any]] {
  let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
  return text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
}

/// The start time of every cpu profile in the OTLP requests.
private func cpuTimes(_ requests: [[String: Any]]) -> [NSNumber] {
  requests.flatMap { request in
    (request["profiles"] as? [[String: Any]] ?? []).filter { $0["sample_type"] as? String == "cpu/nanoseconds" }
      .compactMap { $0["time_unix_nano"] as? NSNumber }
  }
}

/// A port free a moment ago on 127.0.0.1.
private func freePort() -> Int {
  let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
  defer { close(fd) }
  var address = sockaddr_in()
  address.sin_family = sa_family_t(AF_INET)
  address.sin_addr.s_addr = inet_addr("127.0.0.1")
  var length = socklen_t(MemoryLayout<sockaddr_in>.size)
  _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
  _ = withUnsafeMutablePointer(to: &address) {
    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
  }
  return Int(UInt16(bigEndian: address.sin_port))
}

/// The example's executable, built next to this test bundle (or another
/// build of it, e.g. release, named by HUMMINGBIRD_EXAMPLE_EXECUTABLE).
private func exampleExecutable() -> String {
  ProcessInfo.processInfo.environment["HUMMINGBIRD_EXAMPLE_EXECUTABLE"] ?? URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("HummingbirdExample").path
}

/// The outermost function's name at each address of `profile`.
private func outerNames(_ profile: Profile) -> [UInt64: String] {
  var names: [UInt64: String] = [:]
  for location in profile.locations where location.address != 0 {
    names[location.address] = location.lines.last.map { profile.functions[$0.function].name } ?? ""
  }
  return names
}

/// Issue 33: continuous profiling from configuration alone, each window
/// pushed once and named as on demand.
@Suite(.serialized) struct EnvironmentExportTests {
  /// The example app (no exporter line in its main.swift, traits `OTLP` and
  /// `Pyroscope`) run with only the environment set: the profile server
  /// pushes 1 s windows to both receivers. Under load on `/slow` for a
  /// minute, every Pyroscope window names every frame as the on-demand
  /// (per-request) profiles of the same process name it — the defect of a
  /// window left with `[HummingbirdExample]` frames and short DWARF names.
  @Test func serverPushesFromTheEnvironmentAndEveryWindowIsNamed() async throws {
    let scratch = TemporaryDirectory()
    defer { scratch.remove() }
    let windowsDirectory = scratch.path + "/pyroscope"
    try FileManager.default.createDirectory(atPath: windowsDirectory, withIntermediateDirectories: true)
    let pyroscope = try Receiver("pyroscope_receiver.py", [windowsDirectory])
    defer { pyroscope.stop() }
    let otlpOut = scratch.path + "/otlp.jsonl"
    let otlp = try Receiver("otlp_receiver.py", [otlpOut])
    defer { otlp.stop() }

    let port = freePort()
    let app = Process()
    app.executableURL = URL(fileURLWithPath: exampleExecutable())
    app.arguments = ["\(port)"]
    var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("APP_PROFILER_") && !$0.key.hasPrefix("OTEL_") }
    environment["APP_PROFILER_DIR"] = scratch.path
    environment["APP_PROFILER_REQUEST_PROFILING"] = "1"
    environment["OTEL_EXPORTER_OTLP_ENDPOINT"] = "http://127.0.0.1:\(otlp.port)"
    environment["OTEL_SERVICE_NAME"] = "zero-lines"
    environment["APP_PROFILER_OTLP_INTERVAL"] = "1"
    environment["APP_PROFILER_PYROSCOPE_URL"] = "http://127.0.0.1:\(pyroscope.port)"
    environment["APP_PROFILER_PYROSCOPE_APP_NAME"] = "zero-lines"
    environment["APP_PROFILER_PYROSCOPE_INTERVAL"] = "1"
    app.environment = environment
    let log = scratch.path + "/app.log"
    FileManager.default.createFile(atPath: log, contents: nil)
    app.standardOutput = FileHandle(forWritingAtPath: log)
    app.standardError = FileHandle(forWritingAtPath: log)
    try app.run()
    defer {
      kill(app.processIdentifier, SIGKILL)
      app.waitUntilExit()
    }
    let base = "http://127.0.0.1:\(port)"
    var up = false
    for _ in 0..<300 where !up {
      up = (try? await curl(base + "/", timeout: 2))?.status == 200
      if !up { try await Task.sleep(for: .milliseconds(100)) }
    }
    try #require(up, "the example did not answer: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")

    // A minute of load on /slow, with a per-request profile (file:line,
    // symbolized on demand) every few seconds: the reference names.
    let stop = LoopFlag()
    let loaders = (0..<2).map { _ in
      Thread {
        while !stop.isSet { _ = try? curlBlocking(base + "/slow", socket: nil, headers: [], timeout: 10) }
      }
    }
    loaders.forEach { $0.start() }
    var reference: [UInt64: String] = [:]
    let start = Date()
    while Date().timeIntervalSince(start) < 61 {
      if let answer = try? await curl(base + "/slow?profile=cpu&profile_format=pprof"), answer.status == 200,
        let profile = try? PprofDecoder().decode([UInt8](answer.body))
      {
        reference.merge(outerNames(profile)) { _, new in new }
      }
      try await Task.sleep(for: .seconds(3))
    }
    stop.set()
    try await Task.sleep(for: .seconds(2))

    // Pyroscope: a window a second, each named.
    let uploads = jsonLines(windowsDirectory + "/uploads.jsonl").filter { $0["name"] as? String == "zero-lines.cpu" }
    print("environment push: \(uploads.count) Pyroscope windows, \(reference.count) reference addresses")
    #expect(uploads.count >= 55, "\(uploads.count) windows in 61 s")
    #expect(reference.values.contains { $0.hasPrefix("HummingbirdExample.exampleHotFunction(") })
    var windowsWithHot = 0
    var incomplete: [String] = []
    // Frames no on-demand profile met and no symbol names (printed: what
    // a backend would show as the image's name).
    var unnamedElsewhere: Set<String> = []
    for upload in uploads {
      guard let file = upload["file"] as? String,
        let bytes = FileManager.default.contents(atPath: windowsDirectory + "/" + file),
        let profile = try? PprofDecoder().decode([UInt8](bytes))
      else {
        incomplete.append("\(upload["file"] ?? "?"): unreadable")
        continue
      }
      let names = outerNames(profile)
      for location in profile.locations where location.address != 0 && location.lines.isEmpty && reference[location.address] == nil {
        let mapping = location.mapping.map { profile.mappings[$0] }
        unnamedElsewhere.insert(
          "\(String(location.address, radix: 16)) \((mapping?.path as NSString?)?.lastPathComponent ?? "?")+\(String(location.address &- (mapping?.start ?? 0) &+ (mapping?.fileOffset ?? 0), radix: 16))")
      }
      let unnamed = names.filter { $0.value.isEmpty && !(reference[$0.key] ?? "").isEmpty }
      let renamed = names.filter { address, name in
        !name.isEmpty && reference[address].map { !$0.isEmpty && $0 != name } == true
      }
      // The short DWARF name alone is the defect's mark, whatever the address.
      let short = profile.functions.filter { $0.name == "exampleHotFunction" }
      if profile.functions.contains(where: { $0.name.hasPrefix("HummingbirdExample.exampleHotFunction(") }) { windowsWithHot += 1 }
      if !unnamed.isEmpty || !renamed.isEmpty || !short.isEmpty {
        incomplete.append(
          "\(file): \(unnamed.count) unnamed (e.g. \(unnamed.prefix(2).map { (String($0.key, radix: 16), reference[$0.key] ?? "") })), "
            + "\(renamed.count) named otherwise (e.g. \(renamed.prefix(2).map { ($0.value, reference[$0.key] ?? "") })), \(short.count) short")
      }
    }
    print("environment push: frames named nowhere: \(unnamedElsewhere.sorted())")
    // The app's own code has symbols and DWARF: each of its frames is named
    // (code without a symbol, such as `objectdestroy` helpers, by DWARF).
    let ownUnnamed = unnamedElsewhere.filter { $0.contains(" HummingbirdExample+") }
    #expect(ownUnnamed.isEmpty, "frames of the app unnamed: \(ownUnnamed.sorted())")
    #expect(incomplete.isEmpty, "\(incomplete.count) of \(uploads.count) windows: \(incomplete.prefix(5))")
    #expect(windowsWithHot >= uploads.count * 3 / 4, "the hot function named in \(windowsWithHot) of \(uploads.count) windows")

    // OTLP: the same minute, each window once.
    let requests = jsonLines(otlpOut)
    let times = cpuTimes(requests)
    print("environment push: \(requests.count) OTLP requests")
    #expect(requests.count >= 55, "\(requests.count) OTLP requests in 61 s")
    #expect(Set(times.map(\.int64Value)).count == times.count, "a window sent twice")
    #expect(requests.allSatisfy { ($0["resource"] as? [String: Any])?["service.name"] as? String == "zero-lines" })
    let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
    #expect(text.contains("exports OTLP profiles") && text.contains("pushes to Pyroscope"), "\(text.suffix(2000))")
  }

  /// An app that starts an exporter itself next to the server's from the
  /// same environment: one push per destination, each window once.
  @Test func anAppsOwnExporterDoesNotPushTwice() async throws {
    let scratch = TemporaryDirectory()
    defer { scratch.remove() }
    let out = scratch.path + "/otlp.jsonl"
    let receiver = try Receiver("otlp_receiver.py", [out])
    defer { receiver.stop() }
    let environment = [
      "APP_PROFILER_DIR": scratch.path, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:\(receiver.port)",
      "OTEL_SERVICE_NAME": "twice", "APP_PROFILER_OTLP_INTERVAL": "1",
    ]
    let server = ProfileServer(environment: environment)
    try await server.startListening()
    #expect(server.address != nil)
    let log = CollectedLog()
    let own = try #require(OTLPExporter.fromEnvironment(environment, logger: Logger(label: "own") { _ in log }))
    try own.start()
    let stop = LoopFlag()
    let worker = Thread { while !stop.isSet { _ = otlpHotWork(2_000_000) } }
    worker.start()
    try await Task.sleep(for: .milliseconds(4500))
    own.stop()
    await server.stop()
    stop.set()
    let requests = jsonLines(out)
    let times = cpuTimes(requests)
    print("own and server's exporter: \(requests.count) requests, statistics of the app's own \(own.statistics)")
    #expect(requests.count >= 3 && requests.count <= 6, "\(requests.count) requests in 4.5 s of 1 s windows")
    #expect(Set(times.map(\.int64Value)).count == times.count, "a window sent twice")
    #expect(own.statistics.uploaded == 0, "the app's own exporter stayed idle")
    #expect(log.lines.withLock { $0.contains { $0.1.contains("stays idle") } })
  }
}
