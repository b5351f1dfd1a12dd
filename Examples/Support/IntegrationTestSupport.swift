// Shared by the integration packages' tests (symlinked into each test
// target): a curl client over real sockets, temporary directories, and the
// machine's non-loopback address.
import AppProfilerFormats
import Foundation
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

struct CurlAnswer {
  var status: Int
  var headers: [String: String]
  var body: Data
  var text: String { String(decoding: body, as: UTF8.self) }
}

/// Runs curl on a thread of its own (never on the cooperative pool: the
/// profile server answers through Swift concurrency in this same process,
/// and two blocked pool threads would starve it on 2 cores).
func curl(_ url: String, socket: String? = nil, headers: [String] = [], timeout: Int = 60) async throws -> CurlAnswer {
  try await withCheckedThrowingContinuation { continuation in
    let thread = Thread {
      continuation.resume(with: Result { try curlBlocking(url, socket: socket, headers: headers, timeout: timeout) })
    }
    thread.start()
  }
}

func curlBlocking(_ url: String, socket: String?, headers: [String], timeout: Int) throws -> CurlAnswer {
  let directory = FileManager.default.temporaryDirectory.path
  let bodyPath = "\(directory)/int-curl-body-\(UUID().uuidString)"
  let headPath = "\(directory)/int-curl-head-\(UUID().uuidString)"
  defer {
    unlink(bodyPath)
    unlink(headPath)
  }
  var arguments = ["-sS", "--max-time", String(timeout), "-o", bodyPath, "-D", headPath, "-w", "%{http_code}"]
  if let socket { arguments += ["--unix-socket", socket] }
  for header in headers { arguments += ["-H", header] }
  arguments.append(url)
  let process = Process()
  process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
  process.arguments = ["curl"] + arguments
  let output = Pipe()
  process.standardOutput = output
  try process.run()
  let code = output.fileHandleForReading.readDataToEndOfFile()
  process.waitUntilExit()
  var parsed: [String: String] = [:]
  let head = (try? String(contentsOfFile: headPath, encoding: .utf8)) ?? ""
  for line in head.split(whereSeparator: \.isNewline) {
    guard let colon = line.firstIndex(of: ":") else { continue }
    parsed[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
  }
  return CurlAnswer(
    status: Int(String(decoding: code, as: UTF8.self)) ?? 0, headers: parsed,
    body: FileManager.default.contents(atPath: bodyPath) ?? Data())
}

final class TemporaryDirectory: Sendable {
  let path: String
  init() {
    var template = Array("/tmp/apint-XXXXXX".utf8CString)
    path = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)) }
  }
  func remove() { try? FileManager.default.removeItem(atPath: path) }
}

/// An IPv4 address of this machine that is not loopback (to act as a
/// non-loopback client), or nil.
func nonLoopbackAddress() -> String? {
  var list: UnsafeMutablePointer<ifaddrs>? = nil
  guard getifaddrs(&list) == 0 else { return nil }
  defer { freeifaddrs(list) }
  var cursor = list
  while let entry = cursor {
    defer { cursor = entry.pointee.ifa_next }
    guard let address = entry.pointee.ifa_addr, address.pointee.sa_family == sa_family_t(AF_INET) else { continue }
    var host = [CChar](repeating: 0, count: 64)
    guard getnameinfo(address, socklen_t(MemoryLayout<sockaddr_in>.size), &host, 64, nil, 0, NI_NUMERICHOST) == 0 else { continue }
    let text = String(cString: host)
    if !text.hasPrefix("127.") { return text }
  }
  return nil
}

/// Waits until `condition` holds, up to `seconds`.
func waitFor(_ seconds: Double, _ condition: () -> Bool) async -> Bool {
  let deadline = Date().addingTimeInterval(seconds)
  while Date() < deadline {
    if condition() { return true }
    try? await Task.sleep(for: .milliseconds(20))
  }
  return condition()
}

/// The discovery record of this process in `directory`.
func discoveryRecordPath(_ directory: String) -> String { "\(directory)/app-profiler-\(getpid()).json" }
func socketPath(_ directory: String) -> String { "\(directory)/app-profiler-\(getpid()).sock" }

/// The root package's speedscope checker (python jsonschema + cross-field rules).
func validateSpeedscope(_ path: String) throws -> (ok: Bool, output: String) {
  // Up from this file (or its symlink) to the repository root.
  var directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
  while directory.path != "/"
    && !FileManager.default.fileExists(atPath: directory.appendingPathComponent("Tests/Support/validate_speedscope.py").path)
  {
    directory = directory.deletingLastPathComponent()
  }
  let script = directory.appendingPathComponent("Tests/Support/validate_speedscope.py").path
  let result = try runTool(["python3", script, path])
  return (result.status == 0, result.output)
}

/// Runs a command through `/usr/bin/env`: its exit status, and stdout and
/// stderr together. `environment` adds to this process's.
func runTool(_ arguments: [String], environment: [String: String] = [:]) throws -> (status: Int32, output: String) {
  let process = Process()
  process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
  process.arguments = arguments
  if !environment.isEmpty {
    process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
  }
  let output = Pipe()
  process.standardOutput = output
  process.standardError = output
  try process.run()
  let data = output.fileHandleForReading.readDataToEndOfFile()
  process.waitUntilExit()
  return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

// MARK: - Checks both frameworks' tests run against their example app

/// What the shared checks need of a running example app.
protocol ExampleUnderTest: Sendable {
  /// `http://host:port` of the app.
  var base: String { get }
  /// The profile server's socket.
  var socket: String { get }
  /// A scratch directory (the profile store when one is configured).
  var storePath: String { get }
}

/// A profile over the profile server's socket while the app serves traffic.
func checkProfileWhileServing(_ app: some ExampleUnderTest) async throws {
  let base = app.base
  let traffic = Task { () -> Int in
    var served = 0
    for _ in 0..<20 {
      if (try? await curl(base + "/"))?.status == 200 { served += 1 }
    }
    return served
  }
  let profile = try await curl("http://localhost/profile?mode=cpu&duration=1&format=pprof", socket: app.socket)
  let served = await traffic.value
  #expect(profile.status == 200, "\(profile.text)")
  #expect(try PprofDecoder().decode([UInt8](profile.body)).mode == .cpu)
  #expect(served == 20)
}

/// `?profile=…` on the example's routes: off without the parameter, HTML and
/// speedscope with it (the hot function among the hottest frames), the header
/// form in alloc mode, a 400 status header for a bad mode, concurrent
/// profiled requests of one kind and of two kinds all profiled, and a 409
/// header for the same kind at another interval.
func checkPerRequestProfiles(_ app: some ExampleUnderTest) async throws {
  let plain = try await curl(app.base + "/slow")
  #expect(plain.status == 200 && plain.text.hasPrefix("slow "))
  #expect(plain.headers["x-profile-status"] == nil)

  let html = try await curl(app.base + "/slow?profile=cpu")
  #expect(html.status == 200)
  #expect(html.headers["content-type"] == "text/html; charset=utf-8")
  #expect(html.text.contains("id=\"profile-data\"") && html.text.contains("exampleHotFunction"))

  let json = try await curl(app.base + "/slow?profile=cpu&profile_format=speedscope")
  #expect(json.headers["content-type"] == "application/json")
  let file = app.storePath + "/slow.speedscope.json"
  try json.body.write(to: URL(fileURLWithPath: file))
  let check = try validateSpeedscope(file)
  #expect(check.ok, "\(check.output)")
  let top = TopFunctions(try SpeedscopeDecoder().decode([UInt8](json.body)))
  #expect(top.entries.prefix(3).contains { $0.name.contains("exampleHotFunction") }, "\(top.render(limit: 5))")

  let alloc = try await curl(app.base + "/alloc?profile_format=speedscope&profile_interval=65536", headers: ["X-Profile: alloc"])
  #expect(alloc.status == 200)
  #expect(alloc.text.contains("ExampleRecord") && alloc.text.contains("\"unit\":\"bytes\""))

  let bad = try await curl(app.base + "/slow?profile=gpu")
  #expect(bad.text.hasPrefix("slow ") && bad.headers["x-profile-status"]?.hasPrefix("400") == true)

  // Two profiled requests at once share one sampler: both get a profile.
  async let first = curl(app.base + "/slow?profile=cpu")
  async let second = curl(app.base + "/slow?profile=cpu")
  let answers = try await [first, second]
  #expect(answers.filter { $0.text.contains("id=\"profile-data\"") }.count == 2)
  // Another kind meanwhile has a sampler of its own: both are profiled.
  async let cpu = curl(app.base + "/slow?profile=cpu")
  try await Task.sleep(for: .milliseconds(50))
  let wall = try await curl(app.base + "/slow?profile=wall")
  #expect(try await cpu.text.contains("id=\"profile-data\""))
  #expect(wall.text.contains("id=\"profile-data\""), "\(wall.headers)")
  // The same kind at another interval meanwhile: the request is served,
  // unprofiled, with a 409 status header.
  async let running = curl(app.base + "/slow?profile=cpu")
  try await Task.sleep(for: .milliseconds(50))
  let other = try await curl(app.base + "/slow?profile=cpu&profile_interval=2000")
  _ = try await running
  #expect(other.text.hasPrefix("slow ") && other.headers["x-profile-status"]?.hasPrefix("409") == true, "\(other.headers)")
}

/// Routes `/a` and `/b` (hot functions fnA, fnB, each after an await):
/// the middleware's `route` labels separate them in a process profile
/// (checked with `go tool pprof -tagfocus`), and `/a?profile=cpu` holds only
/// /a's work, also with two at once and a process profile running.
func checkRouteLabelsAndTaskScopedProfiles(_ app: some ExampleUnderTest) async throws {
  let scratch = TemporaryDirectory()
  defer { scratch.remove() }
  // 1. A 3 s process profile under load on both routes.
  let profile = try await underLoad(app, routes: ["/a", "/b"]) {
    try await curl("http://localhost/profile?mode=cpu&interval=1000&duration=3&format=pprof", socket: app.socket, timeout: 60)
  }
  #expect(profile.status == 200, "\(profile.text.prefix(300))")
  let file = scratch.path + "/process.pb.gz"
  try profile.body.write(to: URL(fileURLWithPath: file))
  for (route, hot, other) in [("/a", "fnA", "fnB"), ("/b", "fnB", "fnA")] {
    let top = try goPprofTop(file, tagfocus: "route=\(route)", scratch: scratch.path)
    let own = flatPercent(top, hot)
    let foreign = flatPercent(top, other)
    print("-tagfocus route=\(route): \(hot) \(own) % flat, \(other) \(foreign) % flat (of the focused samples)")
    #expect(own >= 95, "\(top)")
    #expect(foreign <= 2, "\(top)")
  }
  let decoded = try PprofDecoder().decode([UInt8](profile.body))
  let hot = share(decoded) { names in names.contains { $0.contains("fnA(") || $0.contains("fnB(") } }
  let labelled = share(decoded) { names in names.contains { $0.contains("fnA(") || $0.contains("fnB(") } } labelled: {
    $0["route"] == "/a" || $0["route"] == "/b"
  }
  print("hot samples with a route label: \(labelled) of \(hot)")
  // All but a rare few: seen on a machine loaded by parallel builds, 1 of
  // 1016 hot samples read no labels (not explained yet; a suspect: labels
  // in memory mapped after the handler's last snapshot of the mappings).
  #expect(hot >= 200 && labelled <= hot && hot - labelled <= max(2, hot / 200), "\(labelled) of \(hot)")

  // 2. While /b is under load and a process profile runs: two /a?profile=cpu
  // at once. Each holds only /a's work; together, what the process profile
  // restricted to route=/a saw of them.
  let (process, scoped) = try await underLoad(app, routes: ["/b"]) { () async throws -> (CurlAnswer, [CurlAnswer]) in
    async let whole = curl("http://localhost/profile?mode=cpu&interval=1000&duration=3&format=pprof", socket: app.socket, timeout: 60)
    try await Task.sleep(for: .milliseconds(500))
    async let first = curl(app.base + "/a?ms=300&profile=cpu&profile_format=pprof")
    async let second = curl(app.base + "/a?ms=300&profile=cpu&profile_format=pprof")
    let both = try await [first, second]
    return (try await whole, both)
  }
  #expect(process.status == 200)
  // Compared: samples in fnA. The request's task also builds and encodes
  // its own profile after the scope ends — still under route=/a in the
  // process profile, but in no scoped one.
  var scopedTotal: Int64 = 0
  for answer in scoped {
    #expect(answer.status == 200 && answer.headers["x-profile-status"]?.hasPrefix("200") == true, "\(answer.headers)")
    let request = try PprofDecoder().decode([UInt8](answer.body))
    let all = share(request) { _ in true }
    let inB = share(request) { names in names.contains { $0.contains("fnB(") } }
    let inA = share(request) { names in names.contains { $0.contains("fnA(") } }
    print("/a?profile=cpu: \(all) samples, fnA \(inA), fnB \(inB)")
    #expect(inA >= 30 && Double(inB) <= 0.02 * Double(all))
    scopedTotal += inA
  }
  let whole = try PprofDecoder().decode([UInt8](process.body))
  let routeA = share(whole) { names in names.contains { $0.contains("fnA(") } } labelled: { $0["route"] == "/a" }
  let routeAAll = share(whole) { _ in true } labelled: { $0["route"] == "/a" }
  print("two /a profiles: fnA \(scopedTotal) samples; process profile, route=/a: fnA \(routeA) (all \(routeAAll))")
  #expect(abs(Double(scopedTotal) - Double(routeA)) <= 0.1 * Double(routeA), "\(scopedTotal) vs \(routeA)")
}

final class LoopFlag: Sendable {
  private let value = Atomic<Bool>(false)
  var isSet: Bool { value.load(ordering: .relaxed) }
  func set() { value.store(true, ordering: .relaxed) }
}

/// Runs `body` while one curl loop per entry of `routes` keeps requesting it.
func underLoad<R: Sendable>(_ app: some ExampleUnderTest, routes: [String], _ body: () async throws -> R) async throws -> R {
  let done = LoopFlag()
  let base = app.base
  let load = Task {
    try await withThrowingTaskGroup(of: Void.self) { group in
      for route in routes {
        group.addTask {
          while !done.isSet { _ = try await curl(base + route, timeout: 20) }
        }
      }
      try await group.waitForAll()
    }
  }
  try await Task.sleep(for: .milliseconds(300))
  let result: R
  do {
    result = try await body()
  } catch {
    done.set()
    _ = try? await load.value
    throw error
  }
  done.set()
  try await load.value
  return result
}

/// Samples (counts) whose stack's function names pass `stack` and whose labels pass `labelled`.
func share(
  _ profile: Profile, _ stack: ([String]) -> Bool, labelled: ([String: String]) -> Bool = { _ in true }
) -> Int64 {
  var total: Int64 = 0
  for thread in profile.threads {
    for sample in thread.samples where labelled(sample.labels) {
      let names = profile.functionsOfStack(sample.stack).map { profile.functions[$0].name }
      if stack(names) { total += profile.count(sample) }
    }
  }
  return total
}

/// `go tool pprof -top -tagfocus …` of a file (its cache in `scratch`).
/// `-symbolize=none`: the profile comes symbolized; otherwise pprof runs
/// binutils over the (large, debug) test binary for frames without a line.
func goPprofTop(_ file: String, tagfocus: String, scratch: String) throws -> String {
  try runTool(
    ["go", "tool", "pprof", "-symbolize=none", "-top", "-nodefraction=0", "-tagfocus", tagfocus, file],
    environment: ["HOME": scratch, "PPROF_TMPDIR": scratch, "GOCACHE": scratch + "/gocache"]
  ).output
}

/// `function`'s flat time as a percentage of the samples the filters kept:
/// `-top` prints percentages of the whole profile, so this divides by the
/// "Showing nodes accounting for N" total (every node shown: -nodefraction=0).
func flatPercent(_ top: String, _ function: String) -> Double {
  let lines = top.split(separator: "\n")
  guard let showing = lines.first(where: { $0.contains("Showing nodes accounting for") }),
    let kept = duration(showing.split(separator: " ").drop { $0 != "for" }.dropFirst().first)
  else { return 0 }
  for line in lines {
    let fields = line.split(separator: " ", omittingEmptySubsequences: true)
    guard fields.count >= 6, let name = fields.dropFirst(5).first,
      name == function || name.hasPrefix(function + "(") || name.hasSuffix("." + function) || name.contains("." + function + "(")
    else { continue }
    if let flat = duration(fields[0]), kept > 0 { return 100 * flat / kept }
  }
  return 0
}

/// `1978ms`, `2.33s`, `0` as milliseconds.
func duration<S: StringProtocol>(_ text: S?) -> Double? {
  guard let raw = text else { return nil }
  var text = String(raw)
  if text.hasSuffix(",") { text.removeLast() }
  if text == "0" { return 0 }
  for (suffix, scale) in [("ms", 1.0), ("us", 0.001), ("ns", 0.000_001), ("s", 1000.0)] where text.hasSuffix(suffix) {
    return Double(text.dropLast(suffix.count)).map { $0 * scale }
  }
  return nil
}

/// With a store: the normal body, `X-Profile-Path` naming a file that
/// validates, the same bytes from `/profiles/<name>`, and no way out of the store.
func checkStoredProfiles(_ app: some ExampleUnderTest) async throws {
  let answer = try await curl(app.base + "/slow?profile=cpu&profile_format=speedscope")
  #expect(answer.text.hasPrefix("slow "), "the body was replaced")
  guard let path = answer.headers["x-profile-path"] else {
    Issue.record("no X-Profile-Path: \(answer.headers)")
    return
  }
  #expect(path.hasPrefix(app.storePath))
  #expect(FileManager.default.fileExists(atPath: path))
  let check = try validateSpeedscope(path)
  #expect(check.ok, "\(check.output)")
  let name = (path as NSString).lastPathComponent
  let served = try await curl("http://localhost/profiles/\(name)", socket: app.socket)
  #expect(served.status == 200 && served.body == FileManager.default.contents(atPath: path))
  let escape = try await curl("http://localhost/profiles/..%2Fetc%2Fpasswd", socket: app.socket)
  #expect(escape.status == 404)
}

/// From a non-loopback client the parameter is ignored; from loopback it works.
func checkNonLoopbackClientIgnored(port: Int) async throws {
  guard let address = nonLoopbackAddress() else {
    Issue.record("this machine has no non-loopback IPv4 address to act as a remote client")
    return
  }
  let remote = try await curl("http://\(address):\(port)/slow?profile=cpu")
  #expect(remote.status == 200 && remote.text.hasPrefix("slow "), "a non-loopback client got a profile")
  #expect(remote.headers["x-profile-status"] == nil)
  let local = try await curl("http://127.0.0.1:\(port)/slow?profile=cpu")
  #expect(local.text.contains("id=\"profile-data\""))
}

/// Issue 35: a per-request wall profile counts the request's time at its
/// awaits. `/wait` sleeps 100 ms: most of its samples are under
/// `[suspended: sleep]`, with the route's closure below the marker.
func checkWallProfilesCountWaiting(_ app: some ExampleUnderTest) async throws {
  var suspended: Int64 = 0
  var total: Int64 = 0
  for _ in 0..<3 {
    let answer = try await curl(app.base + "/wait?profile=wall&profile_format=pprof")
    #expect(answer.status == 200 && answer.headers["x-profile-status"]?.hasPrefix("200") == true, "\(answer.headers)")
    let profile = try PprofDecoder().decode([UInt8](answer.body))
    total += share(profile) { _ in true }
    suspended += share(profile) { names in names.contains("[suspended: sleep]") }
  }
  print("/wait?profile=wall: \(suspended) of \(total) samples under [suspended: sleep]")
  #expect(total >= 20 && Double(suspended) >= 0.7 * Double(total), "\(suspended) of \(total)")
}

/// Issue 35: a slow request's wall profile holds its awaits. The app runs
/// with the flight recorder and a 100 ms slow-request threshold; `/checkout`
/// awaits a 300 ms dependency and computes 100 ms. The flight recorder
/// (19 Hz) counts its task while suspended; the trigger writes the route's
/// wall samples (`slow-wall-…`) next to the cpu profile.
func checkSlowRequestWallProfile(_ app: some ExampleUnderTest) async throws {
  try await Task.sleep(for: .seconds(2))
  func stored() -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: app.storePath)) ?? []).filter { $0.hasPrefix("slow-wall-") }
      .sorted()
  }
  // Six in a row (~2.4 s): the newest file covers the last two seconds.
  for _ in 0..<6 { #expect(try await curl(app.base + "/checkout").status == 200) }
  #expect(await waitFor(10) { !stored().isEmpty })
  try await Task.sleep(for: .milliseconds(1500))
  let name = try #require(stored().last)
  let file = app.storePath + "/" + name
  let scratch = TemporaryDirectory()
  defer { scratch.remove() }
  let top = try runTool(["go", "tool", "pprof", "-top", "-symbolize=none", file], environment: ["HOME": scratch.path])
  #expect(top.status == 0 && top.output.contains("[suspended: sleep]"), "\(top.output.suffix(1500))")
  let profile = try PprofDecoder().decode([UInt8](try Data(contentsOf: URL(fileURLWithPath: file))))
  // Off the thread under the dependency's await: `[suspended: sleep]`
  // mostly; `[enqueued]` once the timer fired and the task waits for a
  // pool thread (seen under load in CI), still time at that await.
  func offThread(_ names: [String]) -> Bool { names.contains { $0.hasPrefix("[suspended") || $0 == "[enqueued]" } }
  let waiting = share(profile) { offThread($0) && $0.contains { $0.contains("exampleDependency") } }
  let sleeping = share(profile) { $0.contains("[suspended: sleep]") && $0.contains { $0.contains("exampleDependency") } }
  let computing = share(profile) { $0.contains { $0.contains("exampleHotFunction") } }
  let total = share(profile) { _ in true }
  print("slow-request wall profile of /checkout: waiting \(waiting) (\(sleeping) at the sleep), computing \(computing), all \(total)")
  // Samples counted nowhere, or waiting under another marker, named in the
  // failure message.
  var others: [String] = []
  for thread in profile.threads {
    for sample in thread.samples {
      let names = profile.functionsOfStack(sample.stack).map { profile.functions[$0].name }
      if names.contains("[suspended: sleep]") || names.contains(where: { $0.contains("exampleHotFunction") }) { continue }
      others.append("\(profile.count(sample)): \(names.prefix(5).joined(separator: " <- "))")
    }
  }
  let detail = "\(others.prefix(20).joined(separator: "\n"))\n\(top.output.prefix(3000))"
  #expect(total >= 20 && Double(waiting + computing) >= 0.8 * Double(total), "\(detail)")
  #expect(Double(sleeping) >= 0.6 * Double(waiting), "\(detail)")
  // 75 % at the await in truth; ~40 samples at 19 Hz, and the file's two
  // windows cut requests at their edges: a wide margin.
  let ratio = Double(waiting) / Double(max(1, waiting + computing))
  #expect((0.5...0.95).contains(ratio) && computing >= 2, "waiting \(waiting) computing \(computing)")
  // The cpu profile of the same moment is there too.
  #expect(FileManager.default.fileExists(atPath: file.replacingOccurrences(of: "slow-wall-", with: "slow-cpu-")))
}
