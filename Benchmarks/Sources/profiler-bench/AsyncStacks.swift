@_spi(Benchmarks) import AppProfiler

#if canImport(Glibc)
import Glibc
#endif

// Async stacks (docs/async-stacks.md): what stitching a task's async callers
// costs.

/// A chain of `depth` async calls; the innermost suspends once, so the
/// executor resumes it with the whole chain only in its contexts, then runs
/// `body` synchronously.
@inline(never) func asyncChain(_ depth: Int, _ body: () -> Double?) async -> Double? {
  if depth == 0 {
    await Task.yield()
    return body()
  }
  let result = await asyncChain(depth - 1, body)
  sink.wrappingAdd(1, ordering: .relaxed)
  return result
}

/// Per-sample cost (self-sent signals of a session, signal delivery and
/// handler) at the bottom of a 30-deep async chain, stitching off and on,
/// interleaved rounds, medians.
func benchAsyncSampleCost(depth: Int, rounds: Int) async throws {
  var costs: [Bool: [Double]] = [false: [], true: []]
  var frames: [Bool: Int] = [:]
  for _ in 0..<rounds {
    for stitch in [false, true] {
      var options = SessionOptions()
      options.asyncStacks = stitch
      options.cpuEngine = .posixTimers
      options.bufferSlots = 8192
      // A long interval: the timer's own signals are rare; the self-sent
      // ones are the samples measured.
      let session = try Profiler.shared.start(mode: .cpu, interval: .seconds(1), options: options)
      let cost = await asyncChain(depth) {
        _ = Profiler.shared.benchmarkSelfSignal(iterations: 200)  // warm up
        usleep(30_000)  // the drain empties the buffer
        return Profiler.shared.benchmarkSelfSignal(iterations: 4_000)
      }
      let profile = try await session.stop()
      if let cost { costs[stitch]!.append(cost) }
      // Depth of the deepest stack recorded: the chain shows when stitched.
      frames[stitch] = profile.stacks.indices.map { profile.functionsOfStack($0).count }.max() ?? 0
      if profile.statistics.droppedSamples > 0 { print("async-sample-cost: \(profile.statistics.droppedSamples) samples dropped") }
    }
  }
  let off = median(costs[false]!)
  let on = median(costs[true]!)
  print(
    "async-sample-cost depth=\(depth) stitch=off per_sample=\(format(off, 0))ns frames=\(frames[false] ?? 0) stitch=on per_sample=\(format(on, 0))ns frames=\(frames[true] ?? 0) added=\(format((on / off - 1) * 100, 1))% rounds=\(rounds)"
  )
  // Labels: the same, stitching on, with the chain running inside a
  // labelled scope (the handler also walks the task's task-local chain).
  var labelled: [Double] = []
  var plain: [Double] = []
  for _ in 0..<rounds {
    for withLabels in [false, true] {
      var options = SessionOptions()
      options.cpuEngine = .posixTimers
      options.bufferSlots = 8192
      let session = try Profiler.shared.start(mode: .cpu, interval: .seconds(1), options: options)
      let measure: () async -> Double? = {
        await asyncChain(depth) {
          _ = Profiler.shared.benchmarkSelfSignal(iterations: 200)
          usleep(30_000)
          return Profiler.shared.benchmarkSelfSignal(iterations: 4_000)
        }
      }
      let cost = withLabels
        ? await Profiler.withLabels(["route": "/bench", "method": "GET"]) { await measure() }
        : await measure()
      let profile = try await session.stop()
      if let cost { if withLabels { labelled.append(cost) } else { plain.append(cost) } }
      if withLabels {
        let carrying = profile.threads.flatMap(\.samples).filter { $0.labels["route"] == "/bench" }.count
        if carrying == 0 { print("async-sample-cost: no labelled samples") }
      }
    }
  }
  let plainMedian = median(plain)
  let labelledMedian = median(labelled)
  print(
    "labels-sample-cost depth=\(depth) labels=off per_sample=\(format(plainMedian, 0))ns labels=on per_sample=\(format(labelledMedian, 0))ns added=\(format((labelledMedian / plainMedian - 1) * 100, 1))% rounds=\(rounds)"
  )
}

/// An async CPU-bound workload: two tasks, each a 30-deep chain whose
/// innermost function burns in slices between Task.yield()s; reports work
/// units per second for `seconds`, while `variant` runs:
/// none | 100-off | 100-on | 1000-off | 1000-on (Hz, stitching).
func benchAsyncThroughput(variant: String, seconds: Double) async throws {
  let parts = variant.split(separator: "-")
  var session: ProfilingSession? = nil
  if parts.count == 2, let hertz = Int(parts[0]) {
    var options = SessionOptions()
    options.asyncStacks = parts[1] == "on"
    session = try Profiler.shared.start(mode: .cpu, interval: .microseconds(1_000_000 / hertz), options: options)
  }
  let stop = Flag()
  let started = ContinuousClock.now
  let workers = (0..<2).map { _ in
    Task.detached { () -> Int in
      var units = 0
      _ = await asyncChain(30) {
        while !stop.isSet {
          units += 1
          var x: UInt64 = UInt64(units)
          for i in 0..<20_000 { x = x &* 6_364_136_223_846_793_005 &+ UInt64(i) }
          sink.wrappingAdd(x, ordering: .relaxed)
        }
        return nil
      }
      return units
    }
  }
  // Not Task.sleep: the two workers hold both threads of the cooperative
  // pool (2 cores) until stopped, so nothing awaiting could resume.
  usleep(UInt32(seconds * 1_000_000))
  stop.set()
  var units = 0
  for worker in workers { units += await worker.value }
  let elapsed = ContinuousClock.now - started
  let elapsedSeconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
  var stitched = "-"
  if let session {
    let profile = try await session.stop()
    stitched = "\(profile.metadata["async_stitched_samples"] ?? "?")/\(profile.totalCount)"
  }
  print("async-throughput variant=\(variant) units_per_s=\(format(Double(units) / elapsedSeconds, 0)) stitched=\(stitched)")
}

func median(_ values: [Double]) -> Double {
  guard !values.isEmpty else { return 0 }
  let sorted = values.sorted()
  return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
}
