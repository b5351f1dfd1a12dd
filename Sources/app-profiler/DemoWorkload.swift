@_spi(Support) import AppProfiler
import AppProfilerServer
import ArgumentParser
import Foundation
import Logging
import Synchronization

/// `app-profiler demo-workload` (hidden): the process `demo` profiles. A small
/// HTTP service on 127.0.0.1 with a CPU-heavy route (/hash), a route that
/// blocks (/wait) and an allocation-heavy one (/alloc), driven by its own
/// load generator, plus the profile server. Prints `READY <pid>`, then runs
/// until its stdin closes.
struct DemoWorkloadCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "demo-workload", abstract: "The workload process of `demo`.", shouldDisplay: false)

  func run() async throws {
    var logger = Logger(label: "app-profiler")
    logger.logLevel = .warning
    let server = try await ProfileServer.start(logger: logger)
    let service = try DemoService()
    service.start()
    DemoLoad(port: service.port).start(threads: 3)
    print("READY \(getpid()) \(service.port)")
    fflush(nil)
    while readLine() != nil {}
    await server.stop()
    Foundation.exit(0)
  }
}

/// The HTTP service: one accept loop, a thread per connection.
final class DemoService: @unchecked Sendable {
  private let fd: Int32
  let port: Int

  init() throws {
    (fd, port) = try LoopbackListener.open(port: 0)
  }

  /// Handler threads that live as long as the service (as in real servers;
  /// a thread per connection would live a few milliseconds).
  func start(handlers: Int = 4) {
    let listener = fd
    for index in 0..<handlers {
      let handler = Thread {
        nameCurrentThread("demo-handler-\(index)")
        while true {
          let client = accept(listener, nil, nil)
          if client >= 0 { demoServe(client) }
        }
      }
      handler.start()
    }
  }
}

/// Reads one request, runs its route, answers, closes.
func demoServe(_ client: Int32) {
  var buffer = [UInt8](repeating: 0, count: 4096)
  let count = recv(client, &buffer, buffer.count, 0)
  let request = String(decoding: buffer[0..<max(count, 0)], as: UTF8.self)
  let path = request.split(separator: " ").dropFirst().first.map(String.init) ?? "/"
  let body: String
  switch path {
  case "/hash": body = String(demoHandleLogin())
  case "/wait": body = String(demoWaitForDatabase())
  case "/alloc": body = String(demoBuildOrders())
  default: body = String(demoRenderReport(rows: 200))
  }
  let response = "HTTP/1.1 200 OK\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
  _ = Array(response.utf8).withUnsafeBufferPointer { send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
  close(client)
}

/// The load generator: threads requesting the routes over loopback.
struct DemoLoad {
  var port: Int

  func start(threads: Int) {
    let routes = ["/hash", "/wait", "/alloc", "/hash", "/report"]
    for index in 0..<threads {
      let port = self.port
      let thread = Thread {
        nameCurrentThread("demo-load-\(index)")
        var next = index
        while true {
          demoRequest(port: port, path: routes[next % routes.count])
          next += 1
        }
      }
      thread.start()
    }
  }
}

@inline(never)
func demoRequest(port: Int, path: String) {
  let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
  defer { close(fd) }
  var address = sockaddr_in()
  address.sin_family = sa_family_t(AF_INET)
  address.sin_port = in_port_t(UInt16(port).bigEndian)
  address.sin_addr.s_addr = inet_addr("127.0.0.1")
  let connected = withUnsafePointer(to: &address) {
    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
  }
  guard connected == 0 else {
    usleep(10_000)
    return
  }
  let request = Array("GET \(path) HTTP/1.1\r\nHost: demo\r\n\r\n".utf8)
  _ = request.withUnsafeBufferPointer { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
  var buffer = [UInt8](repeating: 0, count: 4096)
  while recv(fd, &buffer, buffer.count, 0) > 0 {}
}

/// Results land here so the optimizer cannot drop the work.
let demoSink = Atomic<UInt64>(0)

@inline(never)
func demoHandleLogin() -> UInt64 {
  demoHashPassword(rounds: 300_000)
}

@inline(never)
func demoHashPassword(rounds: Int) -> UInt64 {
  var hash: UInt64 = 0xcbf2_9ce4_8422_2325 ^ demoSink.load(ordering: .relaxed)
  for round in 0..<rounds {
    hash ^= UInt64(truncatingIfNeeded: round)
    hash = hash &* 0x100_0000_01b3
  }
  demoSink.wrappingAdd(hash, ordering: .relaxed)
  return hash
}

@inline(never)
func demoRenderReport(rows: Int) -> Int {
  var text = ""
  for row in 0..<rows { text += "row \(row)\n" }
  demoSink.wrappingAdd(UInt64(text.utf8.count), ordering: .relaxed)
  return text.utf8.count
}

/// A blocking call: waits 20 ms on a condition nobody signals (like a
/// database round trip).
@inline(never)
func demoWaitForDatabase() -> Int {
  let condition = NSCondition()
  condition.lock()
  _ = condition.wait(until: Date().addingTimeInterval(0.02))
  condition.unlock()
  return 1
}

final class DemoOrder {
  var id: Int
  var lines: [String]
  init(id: Int) {
    self.id = id
    lines = (0..<8).map { "item-\($0)-\(id)" }
  }
}

@inline(never)
func demoBuildOrders() -> Int {
  var orders: [DemoOrder] = []
  for id in 0..<2_000 { orders.append(DemoOrder(id: id)) }
  let total = orders.reduce(0) { $0 + $1.lines.count }
  demoSink.wrappingAdd(UInt64(total), ordering: .relaxed)
  return total
}
