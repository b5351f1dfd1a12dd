import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// An HTTP answer as a client saw it.
struct HTTPAnswer: Sendable {
  var status: Int
  var headers: [String: String]  // lowercased names
  var body: Data

  var text: String { String(decoding: body, as: UTF8.self) }
}

/// curl, the real client: `curl --unix-socket PATH http://localhost/…` or a URL.
enum Curl {
  static func get(_ testee: Testee, _ target: String, method: String = "GET", headers: [String] = []) throws -> HTTPAnswer {
    var arguments: [String] = []
    let url: String
    if testee.isUnix {
      arguments += ["--unix-socket", testee.address]
      url = "http://localhost" + target
    } else {
      url = testee.address + target
    }
    return try request(url: url, arguments: arguments, method: method, headers: headers)
  }

  static func request(
    url: String, arguments extra: [String] = [], method: String = "GET", headers: [String] = []
  ) throws -> HTTPAnswer {
    let bodyFile = NSTemporaryDirectory() + "curl-body-\(UUID().uuidString)"
    let headerFile = NSTemporaryDirectory() + "curl-head-\(UUID().uuidString)"
    defer {
      try? FileManager.default.removeItem(atPath: bodyFile)
      try? FileManager.default.removeItem(atPath: headerFile)
    }
    var arguments = ["-sS", "--max-time", "60", "-o", bodyFile, "-D", headerFile, "-w", "%{http_code}"] + extra
    if method == "HEAD" { arguments.append("--head") } else if method != "GET" { arguments += ["-X", method] }
    for header in headers { arguments += ["-H", header] }
    arguments.append(url)
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
    process.arguments = arguments
    let out = Pipe()
    process.standardOutput = out
    try process.run()
    let code = out.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    var parsed: [String: String] = [:]
    let headerText = (try? String(contentsOfFile: headerFile, encoding: .utf8)) ?? ""
    for line in headerText.components(separatedBy: "\r\n") {
      guard let colon = line.firstIndex(of: ":") else { continue }
      parsed[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
    }
    let body = FileManager.default.contents(atPath: bodyFile) ?? Data()
    return HTTPAnswer(status: Int(String(decoding: code, as: UTF8.self)) ?? -1, headers: parsed, body: body)
  }
}

/// A raw socket client, for what curl will not send: malformed requests,
/// slow clients, many connections at once.
final class RawConnection: @unchecked Sendable {
  let fd: Int32

  init(_ testee: Testee) throws {
    if testee.isUnix {
      fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
      var address = sockaddr_un()
      address.sun_family = sa_family_t(AF_UNIX)
      let path = Array(testee.address.utf8)
      withUnsafeMutableBytes(of: &address.sun_path) { raw in
        for (index, byte) in path.enumerated() where index < raw.count - 1 { raw[index] = byte }
      }
      let result = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
      }
      guard result == 0 else {
        close(fd)
        throw POSIXError(.ECONNREFUSED)
      }
    } else {
      let url = URL(string: testee.address)!
      fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
      var address = sockaddr_in()
      address.sin_family = sa_family_t(AF_INET)
      address.sin_port = in_port_t(UInt16(url.port!).bigEndian)
      address.sin_addr.s_addr = inet_addr("127.0.0.1")
      let result = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
      }
      guard result == 0 else {
        close(fd)
        throw POSIXError(.ECONNREFUSED)
      }
    }
  }

  deinit { close(fd) }

  func send(_ text: String) {
    send(bytes: Array(text.utf8))
  }

  func send(bytes: [UInt8]) {
    var offset = 0
    while offset < bytes.count {
      let sent = bytes[offset...].withUnsafeBufferPointer { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
      if sent <= 0 { return }
      offset += sent
    }
  }

  /// Reads until the server closes (or `timeout` passes with nothing new);
  /// nil when nothing came at all.
  func readAll(timeout: Double) -> Data? {
    var limit = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1e6))
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
    var data = Data()
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
      let count = recv(fd, &chunk, chunk.count, 0)
      if count <= 0 { break }
      data.append(contentsOf: chunk[0..<count])
    }
    return data.isEmpty ? nil : data
  }

  /// True when the server has closed the connection (EOF within `timeout`).
  func isClosedByServer(timeout: Double) -> Bool {
    var limit = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1e6))
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
    var byte: UInt8 = 0
    while true {
      let count = recv(fd, &byte, 1, 0)
      if count == 0 { return true }
      if count < 0 { return errno == ECONNRESET }
    }
  }

  /// Sends a request and parses the answer (the server closes after one).
  static func request(_ testee: Testee, _ raw: String, timeout: Double = 30) throws -> HTTPAnswer? {
    let connection = try RawConnection(testee)
    connection.send(raw)
    return connection.readAll(timeout: timeout).map(parse)
  }

  static func parse(_ data: Data) -> HTTPAnswer {
    let text = String(decoding: data, as: UTF8.self)
    let parts = text.components(separatedBy: "\r\n\r\n")
    let headLines = parts[0].components(separatedBy: "\r\n")
    let status = headLines.first.flatMap { Int($0.split(separator: " ").dropFirst().first ?? "") } ?? -1
    var headers: [String: String] = [:]
    for line in headLines.dropFirst() {
      guard let colon = line.firstIndex(of: ":") else { continue }
      headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
    }
    let body = parts.dropFirst().joined(separator: "\r\n\r\n")
    return HTTPAnswer(status: status, headers: headers, body: Data(body.utf8))
  }
}
