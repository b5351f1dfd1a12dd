import AppProfilerVapor
import Foundation
import Synchronization
import Vapor

/// A small service to profile: a CPU-heavy route, a blocking one and an
/// allocating one. `swift run VaporExample serve` serves it on
/// 127.0.0.1:8080 with the profile server on its Unix socket; add
/// `APP_PROFILER_REQUEST_PROFILING=1` and try
/// `curl 'http://127.0.0.1:8080/slow?profile=cpu' -o slow.html`.
public enum VaporExample {
  /// The README's example: `app.profiler.enable(…)` and the middleware.
  public static func configure(_ app: Application, profiler configuration: ProfileServerConfiguration = ProfileServerConfiguration()) {
    app.profiler.enable(configuration)
    app.middleware.use(app.profiler.middleware)
    app.get { _ in "hello\n" }
    app.get("slow") { _ in "slow \(exampleHotFunction(milliseconds: 150))\n" }
    app.get("wait") { _ async throws -> String in
      try await Task.sleep(for: .milliseconds(100))
      return "waited\n"
    }
    app.get("alloc") { _ in "alloc \(exampleAllocate(count: 100_000))\n" }
  }
}

let exampleSink = Atomic<UInt64>(0)

/// Burns CPU for about `milliseconds`: the frame a cpu profile of /slow shows.
@inline(never)
public func exampleHotFunction(milliseconds: Int) -> UInt64 {
  let end = ContinuousClock.now + .milliseconds(milliseconds)
  var x: UInt64 = exampleSink.load(ordering: .relaxed) | 1
  while ContinuousClock.now < end {
    for i in 0..<10_000 { x = x &* 6_364_136_223_846_793_005 &+ UInt64(i) }
  }
  exampleSink.wrappingAdd(x, ordering: .relaxed)
  return x & 0xffff
}

public final class ExampleRecord {
  var id: Int
  var name: String
  init(id: Int) {
    self.id = id
    self.name = "record-\(id)"
  }
}

/// Allocates `count` objects and strings: what an alloc profile of /alloc shows.
@inline(never)
public func exampleAllocate(count: Int) -> Int {
  var total = 0
  for index in 0..<count {
    let record = ExampleRecord(id: index)
    total &+= record.name.utf8.count
  }
  return total
}
