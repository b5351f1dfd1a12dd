@testable import AppProfiler
import Testing

#if canImport(Glibc)
import Glibc
#endif

@inline(never) func insideBurn(_ stop: StopFlag) -> Int { burnSlice(3) }
@inline(never) func outsideBurn(_ stop: StopFlag) -> Int { burnSlice(4) }

@inline(never) func scopedChild(_ stop: StopFlag) async -> Int {
  await burnInSlices(stop, insideBurn)
}

extension SamplingSuite {
  /// One sampler, several consumers: overlapping sessions of the same
  /// sampling each get their own window; task-scoped sessions only their
  /// task tree's samples.
  @Suite struct SharedSessions {
    /// A starts, B joins, A stops, B stops: each profile covers its own
    /// window of a thread that burns throughout.
    @Test func overlappingSessionsGetTheirOwnWindows() async throws {
      let stop = StopFlag()
      let burner = TestThread(name: "burner") { while !stop.isSet { _ = outsideBurn(stop) } }
      _ = burner.waitForTID()
      let a = try Profiler.shared.start(mode: .cpu, interval: .milliseconds(1))
      usleep(400_000)
      let b = try Profiler.shared.start(mode: .cpu, interval: .milliseconds(1))
      usleep(400_000)
      let first = try a.stopSynchronously()
      #expect(Profiler.shared.isBusy)
      usleep(400_000)
      let second = try b.stopSynchronously()
      stop.set()
      burner.join()
      #expect(!Profiler.shared.isBusy)
      let inFirst = first.count(containing: "outsideBurn")
      let inSecond = second.count(containing: "outsideBurn")
      print("shared windows: first \(inFirst) samples (\(first.durationNanoseconds / 1_000_000) ms), second \(inSecond) (\(second.durationNanoseconds / 1_000_000) ms)")
      #expect(second.metadata["session_consumers"] == "2")
      // Windows: A ~800 ms; B ~800 ms plus the time A's stop took (it
      // builds A's profile on this thread while the sampler goes on).
      #expect(first.durationNanoseconds > 700_000_000 && first.durationNanoseconds < 1_500_000_000)
      #expect(second.durationNanoseconds > 700_000_000 && second.durationNanoseconds < 3_000_000_000)
      if underThreadSanitizer { return }
      // One busy thread at 1 kHz: about one sample per millisecond of each
      // window, with a wide margin for a 2-core machine that runs other
      // things too; a window of the whole run, or of nothing, fails it.
      for (samples, profile) in [(inFirst, first), (inSecond, second)] {
        let perMillisecond = Double(samples) / (Double(profile.durationNanoseconds) / 1e6)
        #expect(perMillisecond > 0.5 && perMillisecond < 1.15, "\(samples) samples in \(profile.durationNanoseconds / 1_000_000) ms")
      }
      // Each window's samples lie within it.
      for profile in [first, second] {
        for thread in profile.threads {
          for sample in thread.samples {
            #expect(sample.timestampNanoseconds <= profile.durationNanoseconds + 50_000_000)
          }
        }
      }
    }

    /// Rotation: consecutive windows of one session tile its time — each
    /// begins where the previous ended, each holds the samples of its own
    /// time — and together they are no more than a session that spans them.
    @Test func rotatedWindowsTileTime() throws {
      let stop = StopFlag()
      let burner = TestThread(name: "burner") { while !stop.isSet { _ = outsideBurn(stop) } }
      _ = burner.waitForTID()
      let whole = try Profiler.shared.start(mode: .cpu, interval: .milliseconds(1))
      let rotating = try Profiler.shared.start(mode: .cpu, interval: .milliseconds(1))
      var windows: [Profile] = []
      for _ in 0..<4 {
        let deadline = monotonicNanoseconds() + 300_000_000
        while monotonicNanoseconds() < deadline { usleep(10_000) }
        windows.append(try rotating.rotateSynchronously())
      }
      windows.append(try rotating.stopSynchronously())
      let spanning = try whole.stopSynchronously()
      stop.set()
      burner.join()
      #expect(throws: ProfilerError.self) { _ = try rotating.rotateSynchronously() }
      // Each window starts where the previous one ended (its start is read
      // from the realtime clock, its length from the monotonic one).
      for (previous, next) in zip(windows, windows.dropFirst()) {
        let gap = Int64(next.startTimeNanoseconds) - Int64(previous.startTimeNanoseconds + previous.durationNanoseconds)
        #expect(abs(gap) < 1_000_000, "gap \(gap) ns")
      }
      let counts = windows.map { $0.count(containing: "outsideBurn") }
      let total = counts.reduce(0, +)
      let all = spanning.count(containing: "outsideBurn")
      print("rotated windows: \(counts) = \(total), spanning session \(all)")
      #expect(total <= all)
      if underThreadSanitizer { return }
      for (samples, window) in zip(counts, windows.prefix(4)) {
        let perMillisecond = Double(samples) / (Double(window.durationNanoseconds) / 1e6)
        #expect(perMillisecond > 0.5 && perMillisecond < 1.15, "\(samples) samples in \(window.durationNanoseconds / 1_000_000) ms")
      }
    }

    /// A task-scoped session keeps its scope's task and child tasks and
    /// leaves out a task burning next to it; a whole-process session of the
    /// same sampling, running at the same time, gets both.
    @Test func taskScopedSessionKeepsItsTaskTree() async throws {
      let stop = StopFlag()
      let other = Task.detached { await burnInSlices(stop, outsideBurn) }
      let whole = try Profiler.shared.start(mode: .cpu, interval: .milliseconds(1))
      let scoped = try Profiler.shared.startTaskScoped(mode: .cpu, interval: .milliseconds(1))
      #expect(scoped.isTaskScoped)
      let scopedStop = StopFlag()
      let work = Task.detached {
        await scoped.withScope { () async -> Int in
          async let child = scopedChild(scopedStop)
          let unstructured = Task { await scopedChild(scopedStop) }
          return await child &+ unstructured.value
        }
      }
      try await Task.sleep(for: .seconds(1))
      scopedStop.set()
      _ = await work.value
      let scopedProfile = try await scoped.stop()
      let wholeProfile = try await whole.stop()
      stop.set()
      _ = await other.value
      let mine = scopedProfile.count(containing: "insideBurn")
      let leaked = scopedProfile.count(containing: "outsideBurn")
      print("task-scoped: insideBurn \(mine), outsideBurn \(leaked) of \(scopedProfile.totalCount); whole process: \(wholeProfile.count(containing: "insideBurn")) / \(wholeProfile.count(containing: "outsideBurn"))")
      #expect(scopedProfile.metadata["task_scoped"] == "true")
      #expect(leaked == 0)
      // No sample of a scope carries the scope as a label.
      #expect(scopedProfile.threads.allSatisfy { $0.samples.allSatisfy { $0.labels.isEmpty } })
      if underThreadSanitizer { return }
      #expect(mine >= 100)
      // The whole-process session of the same window has them all.
      let wholeInside = wholeProfile.count(containing: "insideBurn")
      #expect(Double(wholeInside) >= 0.9 * Double(mine) && Double(wholeInside) <= 1.1 * Double(mine) + 20)
      #expect(wholeProfile.count(containing: "outsideBurn") >= 100)
    }

    /// Scoped allocation sessions: only the scope's allocations.
    @Test func taskScopedAllocations() async throws {
      var options = SessionOptions()
      options.allocationSamplingRate = 16_384
      let stop = StopFlag()
      let other = Task.detached { await allocatingOuter(stop) }
      let scoped = try Profiler.shared.startTaskScoped(mode: .alloc, options: options)
      let scopedStop = StopFlag()
      let work = Task.detached {
        await scoped.withScope { await scopedAllocating(scopedStop) }
      }
      try await Task.sleep(for: .milliseconds(500))
      scopedStop.set()
      stop.set()
      _ = await (work.value, other.value)
      let profile = try await scoped.stop()
      let mine = profile.count(containing: "scopedAllocating")
      let leaked = profile.count(containing: "allocatingOuter")
      print("task-scoped alloc: scopedAllocating \(mine), allocatingOuter \(leaked) of \(profile.totalCount)")
      #expect(leaked == 0)
      #expect(mine > 0)
    }
  }
}

extension SamplingSuite.SharedSessions {
  /// With continuous allocation sampling on: a task-scoped alloc session
  /// still gets its scope's samples, and the running totals do not grow an
  /// entry per scope (they fold scopes away).
  @Test func taskScopedAllocationsWithContinuousSampling() async throws {
    try Profiler.shared.enableContinuousAllocationSampling(rate: 16_384)
    defer { Profiler.shared.disableContinuousAllocationSampling() }
    var entries: [Int] = []
    for _ in 0..<5 {
      let scoped = try Profiler.shared.startTaskScoped(mode: .alloc)
      let stop = StopFlag()
      let work = Task.detached { await scoped.withScope { await scopedAllocating(stop) } }
      try await Task.sleep(for: .milliseconds(100))
      stop.set()
      _ = await work.value
      let profile = try await scoped.stop()
      #expect(profile.count(containing: "scopedAllocating") > 0)
      let totals = try #require(Profiler.shared.cumulativeAllocationProfile())
      let mine = totals.threads.flatMap(\.samples).filter { sample in
        totals.names(ofStack: sample.stack).contains { $0.contains("scopedAllocating") }
      }
      #expect(mine.allSatisfy { $0.labels.isEmpty })
      // One running total per stack: a total per stack and scope would
      // repeat each stack once per scoped request.
      #expect(Set(mine.map(\.stack)).count == mine.count, "\(mine.count) entries for \(Set(mine.map(\.stack)).count) stacks")
      entries.append(mine.count)
    }
    // New stacks of it may still turn up (allocation paths sampled late);
    // one entry per stack is the bound.
    print("continuous totals, entries (= stacks) of scopedAllocating after each of 5 scopes: \(entries)")
  }
}

@inline(never) func scopedAllocating(_ stop: StopFlag) async -> Int {
  var total = 0
  while !stop.isSet {
    for index in 0..<1_000 {
      let array = [Int](repeating: index, count: 64)
      total &+= array[index % 64]
    }
    await Task.yield()
  }
  return total
}
