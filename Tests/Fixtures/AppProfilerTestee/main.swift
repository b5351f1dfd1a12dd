// A child process for the server's end-to-end tests.
//
//   AppProfilerTestee [--dir DIR] [--tcp] [--host H] [--port P] [--token T]
//                     [--allow-remote] [--no-stop] [--fork-child] [--alloc-worker]
//                     [--head-timeout S] [--max-duration-ms MS] [--max-connections N]
//
// Starts a CPU-bound worker (testeeHotLoop → testeeHotInner), a blocked
// thread, and a profile server; prints one line `READY <address>` (or
// `ERROR <message>`), then serves until stdin closes. Then it stops the
// server and exits 0 — or, with --no-stop, exits without stopping (the
// atexit cleanup must remove the files). --fork-child forks once after
// READY; the child prints `CHILD <pid>` and exits normally at once (it must
// leave the parent's socket and record alone). --alloc-worker adds a thread
// that allocates TesteeObject instances (testeeAllocLoop → testeeAllocate),
// ~50 MB/s with pauses, for the allocation-profile tests.
@_spi(Support) import AppProfiler
import AppProfilerServer
import Foundation
import Logging
import Synchronization

let testeeSink = Atomic<UInt64>(0)

@inline(never)
func testeeHotInner() {
  var x: UInt64 = testeeSink.load(ordering: .relaxed) | 1
  for i in 0..<50_000 { x = x &* 6_364_136_223_846_793_005 &+ UInt64(i) }
  testeeSink.wrappingAdd(x, ordering: .relaxed)
}

@inline(never)
func testeeHotLoop() {
  while true { testeeHotInner() }
}

/// 16 bytes of header + 32 of fields.
final class TesteeObject {
  var a = 0, b = 0, c = 0, d = 0
}

@_optimize(none) @inline(never) func testeeConsume(_ object: AnyObject) {}

@inline(never)
func testeeAllocate() {
  for index in 0..<1_000 {
    let object = TesteeObject()
    object.a = index
    testeeConsume(object)
  }
}

@inline(never)
func testeeAllocLoop() {
  while true {
    testeeAllocate()
    usleep(1_000)
  }
}

let arguments = Array(CommandLine.arguments.dropFirst())
func option(_ name: String) -> String? {
  guard let index = arguments.firstIndex(of: name), index + 1 < arguments.count else { return nil }
  return arguments[index + 1]
}
func flag(_ name: String) -> Bool { arguments.contains(name) }

var configuration = ProfileServerConfiguration()
configuration.directory = option("--dir")
if flag("--tcp") || option("--host") != nil {
  configuration.bindAddress = .hostname(option("--host") ?? "127.0.0.1", port: Int(option("--port") ?? "0") ?? 0)
}
configuration.bearerToken = option("--token")
configuration.allowRemoteAccess = flag("--allow-remote")
if let seconds = option("--head-timeout").flatMap(Int.init) { configuration.requestHeadTimeout = .seconds(seconds) }
if let milliseconds = option("--max-duration-ms").flatMap(Int.init) { configuration.maxDuration = .milliseconds(milliseconds) }
if let connections = option("--max-connections").flatMap(Int.init) { configuration.maxConnections = connections }


let named = Atomic<Int>(0)
let hot = Thread {
  nameCurrentThread("testee-hot")
  named.add(1, ordering: .releasing)
  testeeHotLoop()
}
hot.start()
let blocked = Thread {
  nameCurrentThread("testee-blocked")
  named.add(1, ordering: .releasing)
  let condition = NSCondition()
  condition.lock()
  while true { condition.wait() }
}
blocked.start()

if flag("--alloc-worker") {
  let allocating = Thread {
    nameCurrentThread("testee-alloc")
    named.add(1, ordering: .releasing)
    testeeAllocLoop()
  }
  allocating.start()
}

while named.load(ordering: .acquiring) < (flag("--alloc-worker") ? 3 : 2) { usleep(1_000) }

let server: ProfileServer
do {
  var logger = Logger(label: "app-profiler")
  logger.logLevel = .warning  // the tests make hundreds of requests
  server = try await ProfileServer.start(configuration: configuration, logger: logger)
} catch {
  print("ERROR \(error)")
  fflush(nil)
  exit(3)
}
print("READY \(server.address.map { $0.socketPath ?? $0.url } ?? "disabled")")
fflush(nil)

if flag("--fork-child") {
  let child = fork()
  if child == 0 {
    print("CHILD \(getpid())")
    fflush(nil)
    exit(0)  // runs atexit handlers in the child
  }
  var status: Int32 = 0
  waitpid(child, &status, 0)
  print("CHILD-EXITED")
  fflush(nil)
}

// Serve until the test closes our stdin.
while readLine() != nil {}
if !flag("--no-stop") {
  await server.stop()
}
exit(0)
