import AppProfiler
@_spi(CLI) import AppProfilerServer
import ArgumentParser
import Foundation

/// Serves one page on 127.0.0.1 to every GET.
final class PageServer {
  private let fd: Int32
  private let page: [UInt8]
  let port: Int

  init(page: [UInt8], port: Int) throws(CLIError) {
    self.page = page
    (fd, self.port) = try LoopbackListener.open(port: port)
  }

  func serveForever() {
    while true {
      let client = accept(fd, nil, nil)
      if client < 0 { continue }
      var request = [UInt8](repeating: 0, count: 8192)
      let received = recv(client, &request, request.count, 0)
      let response: [UInt8]
      if let host = Self.hostHeader(request.prefix(max(0, received))), !hostHeaderNamesLoopback(host) {
        // A page that rebound its own name to 127.0.0.1 must not read the profile.
        let message = Array("host '\(host.prefix(200))' is not served here: only localhost, 127.0.0.1 and [::1]\n".utf8)
        let head = "HTTP/1.1 421 Misdirected Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: \(message.count)\r\nConnection: close\r\nX-Content-Type-Options: nosniff\r\n\r\n"
        response = Array(head.utf8) + message
      } else {
        let head = "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: \(page.count)\r\nConnection: close\r\nX-Content-Type-Options: nosniff\r\n\r\n"
        response = Array(head.utf8) + page
      }
      var sent = 0
      while sent < response.count {
        let count = response[sent...].withUnsafeBufferPointer { send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        if count <= 0 { break }
        sent += count
      }
      close(client)
    }
  }

  /// The `Host` field of a request head (first line excluded), if any.
  static func hostHeader(_ bytes: ArraySlice<UInt8>) -> String? {
    let text = String(decoding: bytes, as: UTF8.self)
    for line in text.split(separator: "\r\n").dropFirst() {
      if line.isEmpty { break }
      guard let colon = line.firstIndex(of: ":"), line[..<colon].lowercased() == "host" else { continue }
      return line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
    }
    return nil
  }
}
