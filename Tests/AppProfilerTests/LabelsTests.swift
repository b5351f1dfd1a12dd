@testable import AppProfiler
import CAppProfiler
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

// Several tasks burn at once here, more than the cooperative pool has
// threads (2 on this machine): each burns in ~1 ms slices between
// Task.yield()s, so all of them (and the test itself) get to run.

@inline(never) func burnSlice(_ x: Int) -> Int {
  var x = x | 1
  for i in 0..<50_000 { x = x &+ (i &* i) ^ (x >> 3) }
  return x
}

@inline(never) func labelledBurnA(_ stop: StopFlag) -> Int { burnSlice(1) }
@inline(never) func labelledBurnB(_ stop: StopFlag) -> Int { burnSlice(2) }

/// Until `stop`: a slice of `burn`, then a suspension.
@inline(never) func burnInSlices(_ stop: StopFlag, _ burn: (StopFlag) -> Int) async -> Int {
  var total = 0
  while !stop.isSet {
    total &+= burn(stop)
    await Task.yield()
  }
  return total
}

@inline(never) func labelledChild(_ stop: StopFlag) async -> Int {
  await burnInSlices(stop, labelledBurnA)
}

extension Profile {
  /// Of the samples whose stack holds `function`: the total, and those whose
  /// labels include every pair of `labels`.
  func labelShare(of function: String, _ labels: [String: String]) -> (total: Int64, labelled: Int64) {
    var total: Int64 = 0
    var labelled: Int64 = 0
    for thread in threads {
      for sample in thread.samples where names(ofStack: sample.stack).contains(where: { $0.contains(function) }) {
        total += count(sample)
        if labels.allSatisfy({ sample.labels[$0.key] == $0.value }) { labelled += count(sample) }
      }
    }
    return (total, labelled)
  }
}

extension SamplingSuite {
  @Suite struct Labels {
    func expectLabelled(
      _ profile: Profile, _ function: String, _ labels: [String: String], minimum: Double = 0.95,
      sourceLocation: SourceLocation = #_sourceLocation
    ) {
      let share = profile.labelShare(of: function, labels)
      print("labels \(function) \(labels): \(share.labelled) of \(share.total)")
      // Under TSan the slices run so slowly (and its deferred signals see
      // registers of a thread that moved on) that only "nothing breaks, no
      // report" is checked there.
      if underThreadSanitizer { return }
      #expect(share.total >= 20, "too few samples in \(function)", sourceLocation: sourceLocation)
      #expect(
        Double(share.labelled) >= minimum * Double(share.total), "\(share.labelled) of \(share.total)",
        sourceLocation: sourceLocation)
    }

    /// Two tasks with different labels, each after an await: every sample of
    /// each hot function carries its own task's labels and not the other's.
    @Test func tasksCarryTheirLabels() async throws {
      let stop = StopFlag()
      let a = Task.detached {
        await Profiler.withLabels(["route": "/a", "method": "GET"]) { () async -> Int in
          await burnInSlices(stop, labelledBurnA)
        }
      }
      let b = Task.detached {
        await Profiler.withLabels(["route": "/b"]) { () async -> Int in
          await burnInSlices(stop, labelledBurnB)
        }
      }
      try await Task.sleep(for: .milliseconds(100))
      let profile = try await Profiler.shared.record(mode: .cpu, duration: .seconds(1), interval: .milliseconds(1))
      stop.set()
      _ = await (a.value, b.value)
      #expect(TaskLabels.isCalibrated)
      expectLabelled(profile, "labelledBurnA", ["route": "/a", "method": "GET"])
      expectLabelled(profile, "labelledBurnB", ["route": "/b"])
      #expect(profile.labelShare(of: "labelledBurnB", ["route": "/a"]).labelled == 0)
      #expect(profile.labelShare(of: "labelledBurnB", ["method": "GET"]).labelled == 0)
    }

    /// Nested scopes merge, inner values win; the scope ends with its body.
    @Test func nestedScopesMerge() async throws {
      await Profiler.withLabels(["route": "/a", "tenant": "x"]) {
        await Task.yield()  // the asynchronous scope around the synchronous one
        Profiler.withLabels(["route": "/a/inner"]) {  // the synchronous scope, inside a task
          #expect(Profiler.currentLabels == ["route": "/a/inner", "tenant": "x"])
          if let task = AsyncRuntime.currentTask() {
            let id = cap_task_labels_for_test(task)
            #expect(LabelRegistry.shared.labels(for: id) == ["route": "/a/inner", "tenant": "x"])
          }
        }
        #expect(Profiler.currentLabels == ["route": "/a", "tenant": "x"])
      }
      #expect(Profiler.currentLabels.isEmpty)
    }

    /// Child tasks inherit (async let, task group, Task {}); a detached task
    /// does not.
    @Test func childTasksInheritDetachedDoNot() async throws {
      let stop = StopFlag()
      let parent = Task.detached {
        await Profiler.withLabels(["scope": "parent"]) { () async -> Int in
          let unstructured = Task { await labelledChild(stop) }
          async let child = labelledChild(stop)
          let grouped = await withTaskGroup(of: Int.self) { group in
            group.addTask { await labelledChild(stop) }
            group.addTask {
              await Task.detached { () async -> Int in
                await burnInSlices(stop, labelledBurnB)
              }.value
            }
            var total = 0
            for await value in group { total &+= value }
            return total
          }
          return await child &+ grouped &+ unstructured.value
        }
      }
      try await Task.sleep(for: .milliseconds(100))
      let profile = try await Profiler.shared.record(mode: .cpu, duration: .seconds(1), interval: .milliseconds(1))
      stop.set()
      _ = await parent.value
      expectLabelled(profile, "labelledBurnA", ["scope": "parent"])
      let detached = profile.labelShare(of: "labelledBurnB", ["scope": "parent"])
      #expect(underThreadSanitizer || detached.total >= 20)
      #expect(detached.labelled == 0)
    }

    /// Threads without a task: setThreadLabels, and the synchronous scope.
    @Test func threadLabels() async throws {
      let stop = StopFlag()
      let plain = TestThread(name: "labelled") {
        Profiler.setThreadLabels(["loop": "io"])
        while !stop.isSet { _ = labelledBurnA(stop) }
        Profiler.setThreadLabels(nil)
      }
      let scoped = TestThread(name: "scoped") {
        Profiler.withLabels(["job": "nightly"]) {
          while !stop.isSet { _ = labelledBurnB(stop) }
        }
        #expect(cap_thread_labels_get() == 0)
      }
      _ = plain.waitForTID()
      _ = scoped.waitForTID()
      usleep(50_000)
      let profile = try await Profiler.shared.record(mode: .cpu, duration: .seconds(1), interval: .milliseconds(1))
      stop.set()
      plain.join()
      scoped.join()
      expectLabelled(profile, "labelledBurnA", ["loop": "io"])
      expectLabelled(profile, "labelledBurnB", ["job": "nightly"])
    }

    /// Allocation samples carry labels too; a task that ended before its
    /// samples were drained still has them (label sets are interned).
    @Test func allocationSamplesAndEndedTasks() async throws {
      var options = SessionOptions()
      options.allocationSamplingRate = 16_384
      let session = try Profiler.shared.start(mode: .alloc, options: options)
      let stop = StopFlag()
      let task = Task.detached {
        await Profiler.withLabels(["route": "/alloc"]) { await allocatingOuter(stop) }
      }
      try await Task.sleep(for: .milliseconds(500))
      stop.set()
      _ = await task.value  // ended before the session stops and drains
      let profile = try await session.stop()
      expectLabelled(profile, "AsyncBox", ["route": "/alloc"])
    }

    @Test func registryInternsAndReusesReleasedIDs() {
      let registry = LabelRegistry(quarantineNanoseconds: 0)
      let first = registry.retain(["a": "1"])
      #expect(first != 0)
      #expect(registry.retain(["a": "1"]) == first)
      #expect(registry.retain([:]) == 0)
      #expect(registry.labels(for: first) == ["a": "1"])
      #expect(registry.labels(for: 999_999).isEmpty)
      registry.release(first)
      #expect(registry.labels(for: first) == ["a": "1"])  // still held once
      registry.release(first)
      // Resting: readable by id until reused, not found by labels.
      #expect(registry.labels(for: first) == ["a": "1"])
      let second = registry.retain(["b": "2"])
      #expect(second == first)
      #expect(registry.labels(for: second) == ["b": "2"])
      // A set per request (trace ids) does not fill the registry.
      for request in 0..<100_000 {
        let id = registry.retain(["trace_id": String(request)])
        registry.release(id)
      }
      #expect(registry.count <= 3, "\(registry.count) sets")
      #expect(registry.droppedSets == 0)
    }

    /// A released id rests before reuse, so samples drained late still
    /// find their labels.
    @Test func releasedIDsRestBeforeReuse() {
      let registry = LabelRegistry(quarantineNanoseconds: 60_000_000_000)
      let first = registry.retain(["a": "1"])
      registry.release(first)
      let second = registry.retain(["b": "2"])
      #expect(second != first)
      #expect(registry.labels(for: first) == ["a": "1"])
    }
  }
}
