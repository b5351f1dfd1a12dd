import Foundation

/// Where a profile server listens: a Unix socket or a TCP host and port.
struct Endpoint: CustomStringConvertible {
  enum Kind {
    case unix(path: String)
    case tcp(host: String, port: Int)
  }

  var kind: Kind
  var token: String?
  /// The profiled process, when known (a pid target, or a socket named
  /// `app-profiler-<pid>.sock`): lets a failed request say the process ended.
  var pid: Int32? = nil

  /// The pid in a server socket's default name, `app-profiler-<pid>.sock`.
  static func pid(ofSocket path: String) -> Int32? {
    let name = path.split(separator: "/").last.map(String.init) ?? path
    guard name.hasPrefix("app-profiler-"), name.hasSuffix(".sock") else { return nil }
    return Int32(name.dropFirst("app-profiler-".count).dropLast(".sock".count))
  }

  var description: String {
    switch kind {
    case .unix(let path): return path
    case .tcp(let host, let port): return "http://\(host):\(port)"
    }
  }
}

/// An HTTP answer.
struct HTTPAnswer {
  var status: Int
  var headers: [String: String]
  var body: [UInt8]

  var text: String { String(decoding: body, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) }
}

/// One blocking HTTP/1.1 request over a socket. The server answers once and
/// closes, so the answer is everything read until EOF. `cancel()` from
/// another thread closes the connection, which stops the server's session.
final class HTTPConnection: @unchecked Sendable {
  private let lock = NSLock()
  private var fd: Int32 = -1
  private var cancelled = false
  let endpoint: Endpoint

  init(_ endpoint: Endpoint) {
    self.endpoint = endpoint
  }

  func cancel() {
    lock.withLock {
      cancelled = true
      if fd >= 0 { shutdown(fd, Int32(SHUT_RDWR)) }
    }
  }

  func get(_ target: String) throws(CLIError) -> HTTPAnswer {
    let socketFD = try connectSocket()
    lock.withLock { fd = socketFD }
    defer {
      lock.withLock { fd = -1 }
      close(socketFD)
    }
    var request = "GET \(target) HTTP/1.1\r\nHost: localhost\r\nUser-Agent: app-profiler\r\nConnection: close\r\n"
    if let token = endpoint.token { request += "Authorization: Bearer \(token)\r\n" }
    request += "\r\n"
    let bytes = Array(request.utf8)
    var sent = 0
    while sent < bytes.count {
      let count = bytes[sent...].withUnsafeBufferPointer { send(socketFD, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
      if count <= 0 { throw .failure("cannot send the request to \(endpoint): \(String(cString: strerror(errno)))") }
      sent += count
    }
    var data: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    while true {
      let count = recv(socketFD, &chunk, chunk.count, 0)
      if count < 0 && errno == EINTR { continue }
      if count <= 0 { break }
      data.append(contentsOf: chunk[0..<count])
    }
    if lock.withLock({ cancelled }) { throw CLIError.interrupted }
    return try parse(data)
  }

  private func parse(_ data: [UInt8]) throws(CLIError) -> HTTPAnswer {
    guard let end = Self.headEnd(data), data.starts(with: Array("HTTP/1.".utf8)) else {
      throw .target("\(endpoint) is not an app-profiler server (no HTTP answer)")
    }
    let head = String(decoding: data[0..<end], as: UTF8.self).components(separatedBy: "\r\n")
    let status = Int(head[0].split(separator: " ").dropFirst().first ?? "") ?? 0
    var headers: [String: String] = [:]
    for line in head.dropFirst() {
      guard let colon = line.firstIndex(of: ":") else { continue }
      headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
    }
    guard headers["server"]?.hasPrefix("swift-app-profiler/") == true else {
      throw .target("\(endpoint) is not an app-profiler server (Server: \(headers["server"] ?? "none"))")
    }
    return HTTPAnswer(status: status, headers: headers, body: Array(data[(end + 4)...]))
  }

  static func headEnd(_ data: [UInt8]) -> Int? {
    guard data.count >= 4 else { return nil }
    for index in 0...(data.count - 4) where data[index] == 13 && data[index + 1] == 10 && data[index + 2] == 13 && data[index + 3] == 10 {
      return index
    }
    return nil
  }

  private func connectSocket() throws(CLIError) -> Int32 {
    switch endpoint.kind {
    case .unix(let path):
      let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
      var address = sockaddr_un()
      address.sun_family = sa_family_t(AF_UNIX)
      let bytes = Array(path.utf8)
      guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { throw .target("socket path too long: \(path)") }
      withUnsafeMutableBytes(of: &address.sun_path) { raw in
        for (index, byte) in bytes.enumerated() { raw[index] = byte }
      }
      let result = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
      }
      if result != 0 {
        let error = errno
        close(fd)
        switch error {
        case EACCES, EPERM:
          throw .target("permission denied on socket \(path): it belongs to another user (run as that user)")
        case ENOENT: throw .target("no socket at \(path)")
        case ECONNREFUSED: throw .target("nothing listens on \(path) (the process has exited?)")
        default: throw .target("cannot connect to \(path): \(String(cString: strerror(error)))")
        }
      }
      return fd
    case .tcp(let host, let port):
      var hints = addrinfo()
      hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
      var list: UnsafeMutablePointer<addrinfo>? = nil
      guard getaddrinfo(host, String(port), &hints, &list) == 0, let first = list else {
        throw .target("cannot resolve \(host)")
      }
      defer { freeaddrinfo(list) }
      var entry: UnsafeMutablePointer<addrinfo>? = first
      while let current = entry {
        let fd = socket(current.pointee.ai_family, current.pointee.ai_socktype, current.pointee.ai_protocol)
        if fd >= 0 && connect(fd, current.pointee.ai_addr, current.pointee.ai_addrlen) == 0 { return fd }
        if fd >= 0 { close(fd) }
        entry = current.pointee.ai_next
      }
      throw .target("cannot connect to \(host):\(port): \(String(cString: strerror(errno)))")
    }
  }
}
