import AppProfiler
import CAppProfiler
import Testing

#if canImport(Glibc)
import Glibc
#endif

// Workloads: `asyncOuter → asyncMiddle → asyncInner`, where the inner one
// suspends (Task.yield) and then burns CPU in a synchronous function. Built
// twice: as the test target is (debug: every partial function has a frame
// pointer, its context sits below it) and with `@_optimize(speed)` (release
// code: the partial function that calls the burn has no frame; its context
// is in r14).

@inline(never) func asyncBurnLoop(_ stop: StopFlag) -> Int {
  var x = 0
  while !stop.isSet {
    for i in 0..<10_000 { x = x &+ (i &* i) ^ (x >> 3) }
  }
  return x
}

@inline(never) func asyncInner(_ stop: StopFlag) async -> Int {
  await Task.yield()
  return asyncBurnLoop(stop)
}

@inline(never) func asyncMiddle(_ stop: StopFlag) async -> Int {
  let r = await asyncInner(stop)
  return r &+ 1
}

@inline(never) func asyncOuter(_ stop: StopFlag) async -> Int {
  let r = await asyncMiddle(stop)
  return r &+ 2
}

@inline(never) @_optimize(speed) func optimizedInner(_ stop: StopFlag) async -> Int {
  await Task.yield()
  return asyncBurnLoop(stop)
}

@inline(never) @_optimize(speed) func optimizedMiddle(_ stop: StopFlag) async -> Int {
  let r = await optimizedInner(stop)
  return r &+ 1
}

@inline(never) @_optimize(speed) func optimizedOuter(_ stop: StopFlag) async -> Int {
  let r = await optimizedMiddle(stop)
  return r &+ 2
}

extension Profile {
  /// Of the samples whose stack holds `leaf`: how many, and how many have
  /// `callers` (in this order, root first) somewhere above it.
  func chainShare(leaf: String, callers: [String]) -> (total: Int64, withChain: Int64) {
    var total: Int64 = 0
    var chained: Int64 = 0
    for thread in threads {
      for sample in thread.samples {
        let names = names(ofStack: sample.stack)
        guard let leafIndex = names.firstIndex(where: { $0.contains(leaf) }) else { continue }
        total += count(sample)
        var position = 0
        for name in names[..<leafIndex] where position < callers.count && name.contains(callers[position]) {
          position += 1
        }
        if position == callers.count { chained += count(sample) }
      }
    }
    return (total, chained)
  }
}

extension SamplingSuite {
  @Suite struct AsyncStacks {
    @Test(arguments: [false, true])
    func cpuProfileShowsTheAwaitingCallers(optimized: Bool) async throws {
      let stop = StopFlag()
      let task = Task.detached { optimized ? await optimizedOuter(stop) : await asyncOuter(stop) }
      try await Task.sleep(for: .milliseconds(100))
      let session = try Profiler.shared.start(mode: .cpu)
      try await Task.sleep(for: .seconds(2))
      let profile = try await session.stop()
      stop.set()
      _ = await task.value
      let prefix = optimized ? "optimized" : "async"
      let share = profile.chainShare(leaf: "asyncBurnLoop", callers: ["\(prefix)Outer", "\(prefix)Middle", "\(prefix)Inner"])
      if let index = profile.threads.flatMap(\.samples).first(where: { profile.names(ofStack: $0.stack).contains { $0.contains("asyncBurnLoop") } })?.stack {
        print(profile.names(ofStack: index).joined(separator: "\n  "))
      }
      print("async cpu optimized=\(optimized): \(share.withChain) of \(share.total) \(profile.metadata["async_stitched_samples"] ?? "-")")
      #expect(share.total > 100)
      #expect(Double(share.withChain) >= 0.95 * Double(share.total))
    }
  }
}
