import AppProfilerServer
import Foundation
import Logging

/// A small HTTP "application" to profile under load: a thread pool serving
/// GET /work (CPU-bound, ~0.2 ms) on 127.0.0.1, plus the profile server on a
/// Unix socket.
final class AppService: @unchecked Sendable {
  let port: Int
  let profiler: ProfileServer
  private let fd: Int32

  static func start(directory: String, handlers: Int = 4) async throws -> AppService {
    var logger = Logger(label: "app-profiler")
    logger.logLevel = .warning
    var environment = ProcessInfo.processInfo.environment
    environment["APP_PROFILER_DIR"] = directory
    let server = try await ProfileServer.start(environment: environment, logger: logger)
    return AppService(profiler: server, handlers: handlers)
  }

  private init(profiler: ProfileServer, handlers: Int) {
    self.profiler = profiler
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var one: Int32 = 1
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    _ = withUnsafePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    listen(fd, 256)
    var actual = sockaddr_in()
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &actual) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    port = Int(UInt16(bigEndian: actual.sin_port))
    self.fd = fd
    let listener = fd
    for _ in 0..<handlers {
      Thread { while true { AppService.serveConnection(accept(listener, nil, nil)) } }.start()
    }
  }

  var socketPath: String { profiler.address?.socketPath ?? "" }

  /// Keep-alive HTTP/1.1: answers every request on the connection.
  static func serveConnection(_ client: Int32) {
    guard client >= 0 else { return }
    defer { close(client) }
    var buffer = [UInt8](repeating: 0, count: 8192)
    var pending: [UInt8] = []
    while true {
      let count = recv(client, &buffer, buffer.count, 0)
      if count <= 0 { return }
      pending += buffer[0..<count]
      while let end = headEnd(pending) {
        pending.removeFirst(end + 4)
        let body = String(appWork())
        let response = "HTTP/1.1 200 OK\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
        _ = Array(response.utf8).withUnsafeBufferPointer { send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
      }
    }
  }

  static func headEnd(_ data: [UInt8]) -> Int? {
    guard data.count >= 4 else { return nil }
    for index in 0...(data.count - 4) where data[index] == 13 && data[index + 1] == 10 && data[index + 2] == 13 && data[index + 3] == 10 {
      return index
    }
    return nil
  }
}

@inline(never)
func appWork() -> UInt64 {
  var x: UInt64 = sink.load(ordering: .relaxed) | 1
  for i in 0..<100_000 { x = x &* 6_364_136_223_846_793_005 &+ UInt64(i) }
  sink.wrappingAdd(x, ordering: .relaxed)
  return x
}

/// One request on a new connection; returns the status (0 on failure).
func httpGet(unixSocket path: String, _ target: String) -> Int {
  let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
  defer { close(fd) }
  var address = sockaddr_un()
  address.sun_family = sa_family_t(AF_UNIX)
  let bytes = Array(path.utf8)
  withUnsafeMutableBytes(of: &address.sun_path) { raw in for (i, b) in bytes.enumerated() { raw[i] = b } }
  let connected = withUnsafePointer(to: &address) {
    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
  }
  guard connected == 0 else { return 0 }
  _ = Array("GET \(target) HTTP/1.1\r\nHost: x\r\n\r\n".utf8).withUnsafeBufferPointer { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
  var data: [UInt8] = []
  var buffer = [UInt8](repeating: 0, count: 65536)
  while true {
    let count = recv(fd, &buffer, buffer.count, 0)
    if count <= 0 { break }
    data += buffer[0..<count]
  }
  let head = String(decoding: data.prefix(12), as: UTF8.self)
  return Int(head.dropFirst(9).prefix(3)) ?? 0
}

/// GET /work on 127.0.0.1:port in a loop (load on the app).
func startHTTPLoad(port: Int, threads: Int, stop: Flag) {
  for _ in 0..<threads {
    Thread {
      while !stop.isSet {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        _ = withUnsafePointer(to: &address) {
          $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        _ = Array("GET /work HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".utf8).withUnsafeBufferPointer {
          send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
        }
        var buffer = [UInt8](repeating: 0, count: 1024)
        _ = recv(fd, &buffer, buffer.count, 0)
        close(fd)
      }
    }.start()
  }
}
