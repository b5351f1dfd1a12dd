// Shared by the integration packages' tests (symlinked into each test
// target): a curl client over real sockets, temporary directories, and the
// machine's non-loopback address.
import Foundation

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
  let process = Process()
  process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
  process.arguments = ["python3", script, path]
  let output = Pipe()
  process.standardOutput = output
  process.standardError = output
  try process.run()
  let data = output.fileHandleForReading.readDataToEndOfFile()
  process.waitUntilExit()
  return (process.terminationStatus == 0, String(decoding: data, as: UTF8.self))
}
