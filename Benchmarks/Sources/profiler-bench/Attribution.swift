import AppProfiler

#if canImport(Glibc)
import Glibc
#endif

// Five leaf functions with fixed shares of work on two threads:
// thread A runs work1 ×4, work2 ×2, work3 ×1 rounds per cycle;
// thread B runs work4 ×3, work5 ×1. Expected split of CPU (both threads busy):
// A: 4/7, 2/7, 1/7 of one core; B: 3/4, 1/4 of the other.
/// Opaque to the optimizer, so the work functions cannot be folded away.
nonisolated(unsafe) var opaqueMultiplier: UInt64 = 31

@inline(never) func work1(_ n: Int) {
  var x: UInt64 = 1; var i = 0
  while i < n { x = x &* opaqueMultiplier &+ UInt64(i); i += 1 }
  sink.wrappingAdd(x, ordering: .relaxed)  // a side effect: the call cannot be hoisted
}
@inline(never) func work2(_ n: Int) {
  var x: UInt64 = 2; var i = 0
  while i < n { x = x &* opaqueMultiplier &+ UInt64(i ^ 2); i += 1 }
  sink.wrappingAdd(x, ordering: .relaxed)  // a side effect: the call cannot be hoisted
}
@inline(never) func work3(_ n: Int) {
  var x: UInt64 = 3; var i = 0
  while i < n { x = x &* opaqueMultiplier &+ UInt64(i ^ 3); i += 1 }
  sink.wrappingAdd(x, ordering: .relaxed)  // a side effect: the call cannot be hoisted
}
@inline(never) func work4(_ n: Int) {
  var x: UInt64 = 4; var i = 0
  while i < n { x = x &* opaqueMultiplier &+ UInt64(i ^ 4); i += 1 }
  sink.wrappingAdd(x, ordering: .relaxed)  // a side effect: the call cannot be hoisted
}
@inline(never) func work5(_ n: Int) {
  var x: UInt64 = 5; var i = 0
  while i < n { x = x &* opaqueMultiplier &+ UInt64(i ^ 5); i += 1 }
  sink.wrappingAdd(x, ordering: .relaxed)  // a side effect: the call cannot be hoisted
}

/// Runs the five-function workload; prints our per-function self shares.
/// `run.sh attribution` runs `perf record -e cpu-clock -F 997 -g` on this
/// process for the same window and compares.
func benchAttribution(seconds: Double, readyFile: String?) async throws {
  let flag = Flag()
  let quantum = 200_000
  let a = Worker {
    while !flag.isSet {
      work1(4 * quantum)
      work2(2 * quantum)
      work3(quantum)
    }
  }
  let b = Worker {
    while !flag.isSet {
      work4(3 * quantum)
      work5(quantum)
    }
  }
  _ = a.waitForTID()
  _ = b.waitForTID()
  usleep(200_000)
  if let readyFile {
    // Tell run.sh to start perf now, then profile the same window.
    let fd = open(readyFile, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    close(fd)
  }
  // ATTRIBUTION_ENGINE=perf|ticker|timer: one engine instead of the automatic choice.
  var options = SessionOptions()
  switch getenv("ATTRIBUTION_ENGINE").map({ String(cString: $0) }) {
  case "perf": options.cpuEngine = .perfEvents
  case "ticker": options.cpuEngine = .cpuTicker
  case "timer": options.cpuEngine = .posixTimers
  default: break
  }
  let profile = try await Profiler.shared.record(
    mode: .cpu, duration: .milliseconds(Int(seconds * 1000)), interval: .nanoseconds(1_003_009), options: options)
  print("engine \(profile.engine)")
  flag.set()
  a.join()
  b.join()
  var counts: [String: Int64] = [:]
  for thread in profile.threads {
    for sample in thread.samples {
      guard let leaf = profile.stacks[sample.stack].first else { continue }
      let name = profile.locations[leaf].lines.last.map { profile.functions[$0.function].name } ?? "?"
      for index in 1...5 where name.contains("work\(index)(") {
        counts["work\(index)", default: 0] += profile.count(sample)
      }
    }
  }
  let total = Double(counts.values.reduce(0, +))
  for index in 1...5 {
    let count = counts["work\(index)"] ?? 0
    print("ours work\(index) \(count) \(format(100 * Double(count) / max(total, 1), 2))")
  }
}

