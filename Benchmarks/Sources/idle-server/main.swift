// The idle, retained and cold-first-profile benchmarks' profiled process:
// idle-baseline's program (Sources/idle-baseline/main.swift) plus the
// profile server, started and not asked until run.sh asks.
//
//   idle-server            the server, nothing else
//   idle-server linked     the library linked, the server not started
//   idle-server work       the server, and 4 threads computing through a
//                          few dozen functions (the demo workload's shape)
//   idle-server nio N      the server, and a NIO event loop group of N
//                          threads waiting for work (a NIO service at rest)
//   idle-server work memory  the work, then what each of the profiler's
//                          caches holds (anonymous RSS after malloc_trim)
//   idle-server busy N     the server, and N threads computing without
//                          pause (N = cores: the process saturates the machine)
@_spi(Benchmarks) import AppProfiler
import AppProfilerServer
import Foundation
import NIOPosix
import Synchronization

let arguments = Array(CommandLine.arguments.dropFirst())
let directory = NSTemporaryDirectory() + "app-profiler-idle-\(getpid())"
var server: ProfileServer?
if arguments.first != "linked" {
  mkdir(directory, 0o700)
  var environment = ProcessInfo.processInfo.environment
  environment["APP_PROFILER_DIR"] = directory
  server = try await ProfileServer.start(environment: environment)
}
var group: MultiThreadedEventLoopGroup?
if arguments.first == "nio", let count = Int(arguments.dropFirst().first ?? "20") {
  group = MultiThreadedEventLoopGroup(numberOfThreads: count)
}
let sink = Atomic<UInt64>(0)
if arguments.first == "work" || arguments.first == "busy" {
  let count = arguments.first == "busy" ? Int(arguments.dropFirst().first ?? "2") ?? 2 : 4
  for index in 0..<count {
    Thread { while true { sink.wrappingAdd(workStep(UInt64(index)), ordering: .relaxed) } }.start()
  }
}
if arguments.dropFirst().first == "memory" {
  // What each cache holds: anonymous RSS after returning free heap pages.
  typealias Trim = @convention(c) (Int) -> Int32
  let trim = unsafeBitCast(dlsym(UnsafeMutableRawPointer(bitPattern: 0), "malloc_trim"), to: Trim.self)
  func anon() -> Int {
    _ = trim(0)
    let text = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
    let line = text.split(separator: "\n").first { $0.hasPrefix("RssAnon:") } ?? ""
    return Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0
  }
  var last = anon()
  func step(_ name: String) {
    let now = anon()
    print("memory step=\(name) rss_anon=\(now)kB delta=\(now - last)kB")
    last = now
  }
  step("start")
  let tables = Profiler.shared.unwindTableStatistics()
  step("unwind-tables(\(tables.images) images, \(tables.rows) rows, \(tables.bytes / 1024) kB)")
  Profiler.shared.resetUnwindTables()
  step("unwind-tables-dropped")
  let profile = try await Profiler.shared.record(mode: .cpu, duration: .seconds(2))
  step("cpu-profile(\(profile.locations.count) locations)")
  Profiler.shared.resetSymbolCaches()
  step("symbol-caches-dropped")
  Profiler.shared.resetUnwindTables()
  step("unwind-tables-dropped")
}
print("READY \(getpid()) \(server?.address?.socketPath ?? "-")")
fflush(nil)
await Task.detached { while readLine() != nil {} }.value
try? await group?.shutdownGracefully()
await server?.stop()
try? FileManager.default.removeItem(atPath: directory)

// A little call tree, so profiles have frames to symbolicate.
@inline(never) func workStep(_ seed: UInt64) -> UInt64 { workA(seed) &+ workB(seed) }
@inline(never) func workA(_ seed: UInt64) -> UInt64 { mix(seed, 20_000) }
@inline(never) func workB(_ seed: UInt64) -> UInt64 { workC(seed) ^ mix(seed, 10_000) }
@inline(never) func workC(_ seed: UInt64) -> UInt64 { mix(seed &+ 1, 15_000) }
@inline(never) func mix(_ seed: UInt64, _ rounds: Int) -> UInt64 {
  var x = seed | 1
  for i in 0..<rounds { x = x &* 6_364_136_223_846_793_005 &+ UInt64(i) }
  return x
}
