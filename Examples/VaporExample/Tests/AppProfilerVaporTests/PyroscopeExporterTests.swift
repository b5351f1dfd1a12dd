import AppProfiler
import AppProfilerFormats
import AppProfilerPyroscope
import Foundation
import Synchronization
import Testing
import Vapor
import VaporExample

/// A receiver of Pyroscope's documented ingest contract (`POST /ingest`,
/// query `name`, `from`, `until`, `format`, `sampleRate`, `spyName`;
/// multipart field `profile`): Grafana Pyroscope itself cannot be installed
/// here. It answers 503 while `failing` says so.
final class IngestReceiver: @unchecked Sendable {
  struct Upload {
    var query: [String: String]
    var headers: [String: String]
    var profile: [UInt8]
  }

  private let lock = NSLock()
  private var received: [Upload] = []
  private var refused = 0
  private let failing: @Sendable () -> Bool

  init(failing: @escaping @Sendable () -> Bool) { self.failing = failing }

  var uploads: [Upload] { lock.withLock { received } }
  var refusals: Int { lock.withLock { refused } }

  func routes(_ app: Application) {
    app.on(.POST, "ingest", body: .collect(maxSize: "16mb")) { [self] request -> Response in
      if failing() {
        lock.withLock { refused += 1 }
        return Response(status: .serviceUnavailable)
      }
      var query: [String: String] = [:]
      for item in URLComponents(string: request.url.string)?.queryItems ?? [] { query[item.name] = item.value ?? "" }
      var headers: [String: String] = [:]
      for (name, value) in request.headers { headers[name.lowercased()] = value }
      guard let contentType = request.headers.first(name: .contentType),
        let boundary = contentType.components(separatedBy: "boundary=").last, contentType.hasPrefix("multipart/form-data"),
        let body = request.body.data, let profile = Self.part("profile", of: Array(body.readableBytesView), boundary: boundary)
      else { return Response(status: .badRequest) }
      lock.withLock { received.append(Upload(query: query, headers: headers, profile: profile)) }
      return Response(status: .ok)
    }
  }

  /// The content of the multipart part `name`.
  static func part(_ name: String, of body: [UInt8], boundary: String) -> [UInt8]? {
    let delimiter = Array("--\(boundary)".utf8)
    var parts: [ArraySlice<UInt8>] = []
    var start: Int? = nil
    var index = 0
    while index + delimiter.count <= body.count {
      if body[index..<(index + delimiter.count)].elementsEqual(delimiter) {
        if let start { parts.append(body[start..<max(start, index - 2)]) }  // minus the CRLF before
        index += delimiter.count
        start = index + 2  // the CRLF after
        continue
      }
      index += 1
    }
    let separator = Array("\r\n\r\n".utf8)
    for part in parts {
      guard let end = (part.startIndex..<max(part.startIndex, part.endIndex - 3)).first(where: { part[$0..<($0 + 4)].elementsEqual(separator) })
      else { continue }
      let head = String(decoding: part[part.startIndex..<end], as: UTF8.self)
      if head.contains("name=\"\(name)\"") { return Array(part[(end + 4)...]) }
    }
    return nil
  }
}

/// Issue 20: push. 60 s of pushing at 2 s windows to a receiver that
/// refuses (503) for 30 s in the middle.
@Suite(.serialized) struct PyroscopeExporterTests {
  @Test func windowsTileTimeAndSurviveAnOutage() async throws {
    let scratch = TemporaryDirectory()
    defer { scratch.remove() }
    let start = Date()
    let receiver = IngestReceiver { let t = Date().timeIntervalSince(start); return t >= 15 && t < 45 }
    let app = try await Application.make(Environment(name: "testing", arguments: ["vapor"]))
    app.logger.logLevel = .warning
    app.http.server.configuration.port = 0
    receiver.routes(app)
    try await app.startup()
    let port = try #require(app.http.server.shared.localAddress?.port)

    var configuration = PyroscopeConfiguration(serverURL: "http://127.0.0.1:\(port)", applicationName: "vapor-example")
    configuration.tags = ["env": "test", "region": "eu-1"]
    configuration.uploadInterval = .seconds(2)
    configuration.queueCapacity = 4
    configuration.maxBackoff = .seconds(2)
    configuration.bearerToken = "t0ken"
    configuration.tenantID = "tenant-7"
    let exporter = PyroscopeExporter(configuration: configuration)
    let stop = LoopFlag()
    let burner = Thread { while !stop.isSet { _ = exampleHotFunction(milliseconds: 20) } }
    burner.start()
    try exporter.start()
    while Date().timeIntervalSince(start) < 60 { try await Task.sleep(for: .milliseconds(200)) }
    exporter.stop()
    stop.set()
    let statistics = exporter.statistics
    try await app.asyncShutdown()

    let uploads = receiver.uploads.sorted { Int($0.query["from"]!)! < Int($1.query["from"]!)! }
    print("pyroscope: \(uploads.count) uploads, \(receiver.refusals) refused (503), statistics \(statistics)")
    #expect(uploads.count >= 15)
    // Every upload: the documented contract.
    for upload in uploads {
      #expect(upload.query["name"] == "vapor-example.cpu{env=test,region=eu-1}", "\(upload.query)")
      #expect(upload.query["format"] == "pprof" && upload.query["sampleRate"] == "100" && upload.query["spyName"] != nil)
      #expect(upload.headers["authorization"] == "Bearer t0ken" && upload.headers["x-scope-orgid"] == "tenant-7")
      #expect(Array(upload.profile.prefix(2)) == [0x1f, 0x8b], "gzip")
    }
    // The windows tile time: each `until` is the next `from`, but where
    // windows were dropped during the outage — as many as counted.
    var missing = 0
    for (previous, next) in zip(uploads, uploads.dropFirst()) {
      let gap = Int(next.query["from"]!)! - Int(previous.query["until"]!)!
      #expect(gap >= 0 && gap % 2 == 0, "from \(next.query["from"]!) after until \(previous.query["until"]!)")
      missing += gap / 2
    }
    for upload in uploads {
      #expect(Int(upload.query["until"]!)! > Int(upload.query["from"]!)!)
    }
    #expect(missing == statistics.dropped, "\(missing) windows missing, \(statistics.dropped) counted as dropped")
    #expect(statistics.dropped > 0 && statistics.maxQueued <= 4 && statistics.rejected == 0)
    #expect(statistics.uploaded == uploads.count && statistics.failedAttempts >= receiver.refusals)
    // Uploads resumed after the outage, and covered the time around it.
    let first = Int(uploads.first!.query["from"]!)!
    let last = Int(uploads.last!.query["until"]!)!
    #expect(last - first >= 56, "\(first) … \(last)")
    #expect(uploads.contains { Int($0.query["from"]!)! >= first + 46 })
    // go tool pprof reads them; the burning thread is in them.
    var hot = 0
    for (index, upload) in uploads.enumerated() where index % 5 == 0 {
      let file = scratch.path + "/upload-\(index).pb.gz"
      try Data(upload.profile).write(to: URL(fileURLWithPath: file))
      let top = try runTool(["go", "tool", "pprof", "-top", "-symbolize=none", file], environment: ["HOME": scratch.path])
      #expect(top.status == 0, "\(top.output.suffix(400))")
      if top.output.contains("exampleHotFunction") { hot += 1 }
    }
    #expect(hot >= 2)
  }

  /// With `allocations`, each window also goes up as `<app>.alloc_space`,
  /// an allocation profile (trace_id/span_id labels left out).
  @Test func allocationWindows() async throws {
    let scratch = TemporaryDirectory()
    defer { scratch.remove() }
    let receiver = IngestReceiver { false }
    let app = try await Application.make(Environment(name: "testing", arguments: ["vapor"]))
    app.logger.logLevel = .warning
    app.http.server.configuration.port = 0
    receiver.routes(app)
    try await app.startup()
    let port = try #require(app.http.server.shared.localAddress?.port)
    var configuration = PyroscopeConfiguration(serverURL: "http://127.0.0.1:\(port)/", applicationName: "vapor-example")
    configuration.uploadInterval = .seconds(1)
    configuration.allocations = true
    var options = SessionOptions()
    options.allocationSamplingRate = 4096
    configuration.sessionOptions = options
    let exporter = PyroscopeExporter(configuration: configuration)
    let stop = LoopFlag()
    let allocator = Thread {
      Profiler.setThreadLabels(["trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "worker": "alloc"])
      while !stop.isSet { _ = exampleAllocate(count: 10_000) }
    }
    allocator.start()
    try exporter.start()
    try await Task.sleep(for: .milliseconds(3500))
    exporter.stop()
    stop.set()
    try await app.asyncShutdown()
    let uploads = receiver.uploads
    let allocs = uploads.filter { $0.query["name"] == "vapor-example.alloc_space" }
    print("pyroscope allocations: \(uploads.map { $0.query["name"] ?? "" })")
    #expect(allocs.count >= 2 && uploads.contains { $0.query["name"] == "vapor-example.cpu" })
    let upload = try #require(allocs.first)
    let file = scratch.path + "/alloc.pb.gz"
    try Data(upload.profile).write(to: URL(fileURLWithPath: file))
    let raw = try runTool(["go", "tool", "pprof", "-raw", file], environment: ["HOME": scratch.path])
    #expect(raw.status == 0 && raw.output.contains("alloc_space/bytes"), "\(raw.output.prefix(400))")
    #expect(raw.output.contains("worker") && !raw.output.contains("trace_id"), "labels: \(raw.output.suffix(400))")
  }

  @Test func configurationFromEnvironment() throws {
    #expect(try PyroscopeConfiguration.fromEnvironment([:]) == nil)
    let configuration = try #require(
      try PyroscopeConfiguration.fromEnvironment([
        "APP_PROFILER_PYROSCOPE_URL": "https://profiles.example:4040", "APP_PROFILER_PYROSCOPE_APP_NAME": "orders",
        "APP_PROFILER_PYROSCOPE_TAGS": "env=prod, region=eu", "APP_PROFILER_PYROSCOPE_USER": "123",
        "APP_PROFILER_PYROSCOPE_PASSWORD": "key", "APP_PROFILER_PYROSCOPE_TENANT": "t",
        "APP_PROFILER_PYROSCOPE_INTERVAL": "10", "APP_PROFILER_PYROSCOPE_ALLOCATIONS": "1",
      ]))
    #expect(configuration.applicationName == "orders" && configuration.tags == ["env": "prod", "region": "eu"])
    #expect(configuration.basicAuth == .init(user: "123", password: "key") && configuration.tenantID == "t")
    #expect(configuration.uploadInterval == .seconds(10) && configuration.allocations)
    for (variable, value) in [
      ("APP_PROFILER_PYROSCOPE_URL", "pyroscope:4040"), ("APP_PROFILER_PYROSCOPE_INTERVAL", "0"),
      ("APP_PROFILER_PYROSCOPE_TAGS", "novalue"),
    ] {
      var environment = ["APP_PROFILER_PYROSCOPE_URL": "http://p:4040"]
      environment[variable] = value
      #expect(throws: PyroscopeConfiguration.EnvironmentError.self) { _ = try PyroscopeConfiguration.fromEnvironment(environment) }
    }
    #expect(PyroscopeExporter.fromEnvironment(["APP_PROFILER_PYROSCOPE_URL": "nonsense"]) == nil)
  }
}
