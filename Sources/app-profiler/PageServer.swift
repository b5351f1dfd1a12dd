import AppProfiler
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
      _ = recv(client, &request, request.count, 0)
      let head = "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: \(page.count)\r\nConnection: close\r\nX-Content-Type-Options: nosniff\r\n\r\n"
      let response = Array(head.utf8) + page
      var sent = 0
      while sent < response.count {
        let count = response[sent...].withUnsafeBufferPointer { send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        if count <= 0 { break }
        sent += count
      }
      close(client)
    }
  }
}
