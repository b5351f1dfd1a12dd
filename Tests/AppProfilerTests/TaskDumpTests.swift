@_spi(Testing) import AppProfiler
import AppProfilerFormats
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Continuations the parked tasks wait on, resumed at the end of a test.
final class Parking: Sendable {
  private let waiting = Mutex<[CheckedContinuation<Void, Never>]>([])
  private let released = Atomic<Bool>(false)

  var count: Int { waiting.withLock { $0.count } }

  func park() async {
    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
      let now = waiting.withLock { list -> Bool in
        if released.load(ordering: .acquiring) { return true }
        list.append(continuation)
        return false
      }
      if now { continuation.resume() }
    }
  }

  func releaseAll() {
    released.store(true, ordering: .releasing)
    for continuation in waiting.withLock({ list in defer { list = [] }; return list }) { continuation.resume() }
  }
}

actor ParkingGate {
  @inline(never) func enterAndPark(_ parking: Parking) async {
    await parking.park()
  }
}

@inline(never) func taskDumpUnstructuredLeaf(_ parking: Parking) async { await parking.park() }
@inline(never) func taskDumpUnstructuredCaller(_ parking: Parking) async {
  await taskDumpUnstructuredLeaf(parking)
  _ = getpid()
}
@inline(never) func taskDumpDetachedSleeper() async { try? await Task.sleep(for: .seconds(60)) }
@inline(never) func taskDumpAsyncLetChild(_ parking: Parking) async { await parking.park() }
@inline(never) func taskDumpAsyncLetParent(_ parking: Parking) async {
  async let child: Void = taskDumpAsyncLetChild(parking)
  await child
}
@inline(never) func taskDumpGroupChild(_ parking: Parking) async { await parking.park() }
@inline(never) func taskDumpGroupParent(_ parking: Parking) async {
  await withTaskGroup(of: Void.self) { group in
    for _ in 0..<3 { group.addTask { await taskDumpGroupChild(parking) } }
    await group.waitForAll()
  }
}
@inline(never) func taskDumpActorCaller(_ gate: ParkingGate, _ parking: Parking) async {
  await gate.enterAndPark(parking)
}

@inline(never) func taskWallSleeper() async { try? await Task.sleep(for: .milliseconds(300)) }
@inline(never) func taskWallBurner(milliseconds: Int) -> UInt64 {
  let end = ContinuousClock.now + .milliseconds(milliseconds)
  var x: UInt64 = 1
  repeat {
    for i in 0..<20_000 { x = (x &* 6_364_136_223_846_793_005 &+ UInt64(i)) ^ (x &>> 9) }
  } while ContinuousClock.now < end
  return x
}
@inline(never) func taskWallRequest() async -> UInt64 {
  await taskWallSleeper()
  return taskWallBurner(milliseconds: 100)
}
actor TaskWallBusyActor {
  /// Set once a caller holds the actor.
  nonisolated let holding = Atomic<Bool>(false)
  @inline(never) func hold(milliseconds: Int) -> UInt64 {
    holding.store(true, ordering: .releasing)
    return taskWallBurner(milliseconds: milliseconds)
  }
}
@inline(never) func taskWallActorCaller(_ actor: TaskWallBusyActor) async -> UInt64 { await actor.hold(milliseconds: 20) }

extension SamplingSuite {
  /// Task dumps (docs/tasks.md) run a thread snapshot for running tasks: a
  /// session, hence in SamplingSuite.
  @Suite struct TaskDumps {
    /// Names of a sample's stack, leaf first.
    static func chain(_ profile: Profile, _ sample: Profile.Sample) -> [String] {
      profile.functionsOfStack(sample.stack).reversed().map { profile.functions[$0].name }
    }

    static func samples(_ profile: Profile) -> [Profile.Sample] { profile.threads.flatMap(\.samples) }

    @Test func everyCreationPathIsListedWithItsChain() async throws {
      Profiler.shared.prepareTaskDump()
      let parking = Parking()
      let gate = ParkingGate()
      let unstructured = Task { await taskDumpUnstructuredCaller(parking) }
      let detached = Task.detached { await taskDumpDetachedSleeper() }
      let asyncLet = Task { await taskDumpAsyncLetParent(parking) }
      let group = Task { await taskDumpGroupParent(parking) }
      let actorCall = Task { await taskDumpActorCaller(gate, parking) }
      defer { detached.cancel() }
      // 1 + 1 (async let) + 3 (group) + 1 (actor) continuations.
      for _ in 0..<500 where parking.count < 6 { try await Task.sleep(for: .milliseconds(10)) }
      #expect(parking.count == 6)
      try await Task.sleep(for: .milliseconds(50))
      let dumpStart = ContinuousClock.now
      let profile = try Profiler.shared.taskDumpSynchronously()
      print("task dump: \(ContinuousClock.now - dumpStart), \(profile.metadata["tasks_live"] ?? "?") tasks")
      let samples = Self.samples(profile)
      let chains = samples.map { (Self.chain(profile, $0), $0) }
      // Chains hold the function itself (named with its module), leaf first.
      func find(_ function: String) -> [(names: [String], sample: Profile.Sample)] {
        chains.filter { $0.0.contains { $0.hasPrefix("AppProfilerTests." + function) } }.map { ($0.0, $0.1) }
      }
      func check(_ function: String, callers: [String] = [], waiting: String, count: Int = 1) {
        let found = find(function)
        #expect(found.count == count, "\(function): \(found.count) of \(chains.map { $0.0.prefix(3) })")
        for (names, sample) in found {
          // The callers follow, in order, down to the task's entry.
          var rest = names.drop { !$0.hasPrefix("AppProfilerTests." + function) }.dropFirst()
          for caller in callers {
            guard let at = rest.firstIndex(where: { $0.contains(caller) }) else {
              Issue.record("\(function): no \(caller) after it in \(names)")
              break
            }
            rest = rest[(at + 1)...]
          }
          #expect(sample.labels["state"] == "suspended", "\(function): \(sample.labels)")
          #expect(sample.labels["waiting_on"] == waiting, "\(function): \(sample.labels) \(names)")
          #expect(sample.labels["task_id"].flatMap(UInt64.init) != nil)
        }
      }
      check("Parking.park", waiting: "continuation", count: 6)
      check("taskDumpUnstructuredLeaf", callers: ["taskDumpUnstructuredCaller", "closure #1"], waiting: "continuation")
      check("taskDumpAsyncLetChild", waiting: "continuation")
      check("taskDumpGroupChild", callers: ["closure #1"], waiting: "continuation", count: 3)
      check("ParkingGate.enterAndPark", callers: ["taskDumpActorCaller"], waiting: "continuation")
      check("taskDumpDetachedSleeper", waiting: "sleep")
      check("taskDumpAsyncLetParent", callers: ["closure #3"], waiting: "task")
      check("taskDumpGroupParent", callers: ["closure #4"], waiting: "group")
      // Children name their parent.
      let parentID = find("taskDumpAsyncLetParent").first?.sample.labels["task_id"]
      let child = find("taskDumpAsyncLetChild").first?.sample
      #expect(parentID != nil && child?.labels["parent_id"] == parentID, "\(String(describing: child?.labels))")
      let groupID = find("taskDumpGroupParent").first?.sample.labels["task_id"]
      let groupChildren = find("taskDumpGroupChild").map(\.sample)
      #expect(groupChildren.count == 3 && groupChildren.allSatisfy { $0.labels["parent_id"] == groupID }, "\(groupID ?? "-") \(groupChildren.map(\.labels))")
      // The pprof encoding keeps the labels and a single sample type.
      let decoded = try PprofDecoder().decode(PprofEncoder().encode(profile))
      #expect(decoded.sampleTypes.map(\.type) == ["tasks"])
      #expect(Self.samples(decoded).count == samples.count)

      // suspended_for keeps only those parked long enough (the clock started
      // with the first dump: nothing has waited 1 h).
      #expect(Self.samples(try Profiler.shared.taskDumpSynchronously(suspendedFor: .seconds(3600))).isEmpty)

      parking.releaseAll()
      detached.cancel()
      for task in [unstructured, asyncLet, group, actorCall] { await task.value }
      // Gone from the next dump.
      let after = try Profiler.shared.taskDumpSynchronously()
      #expect(!Self.samples(after).contains { Self.chain(after, $0).contains { $0.hasPrefix("AppProfilerTests.Parking.park") } })
    }

    /// Only the known layout is read: another version or task size is
    /// "unsupported" with the reason, before any task memory is touched.
    @Test func unknownLayoutsAreUnsupported() {
      #expect(Profiler.shared.taskLayoutCheck(runtimeVersion: 1, taskSize: 208) == nil)
      #expect(Profiler.shared.taskLayoutCheck(runtimeVersion: 2, taskSize: 208) == "unknown task layout version 2 (known: 1)")
      #expect(Profiler.shared.taskLayoutCheck(runtimeVersion: 0, taskSize: 208)?.contains("unknown task layout version 0") == true)
      #expect(Profiler.shared.taskLayoutCheck(runtimeVersion: 1, taskSize: 96) == "unexpected task size 96")
    }

    @Test func waitsAreMeasuredAcrossDumps() async throws {
      let parking = Parking()
      let parked = Task { await taskDumpUnstructuredCaller(parking) }
      for _ in 0..<500 where parking.count < 1 { try await Task.sleep(for: .milliseconds(10)) }
      // The clock starts with the first dump that sees the task suspended
      // (a loaded pool may leave it running on its way there for a while).
      for _ in 0..<100 {
        let first = try Profiler.shared.taskDumpSynchronously()
        if Self.samples(first).contains(where: { sample in
          sample.labels["state"] == "suspended" && Self.chain(first, sample).contains { $0.contains("taskDumpUnstructuredLeaf") }
        }) { break }
        try await Task.sleep(for: .milliseconds(20))
      }
      for _ in 0..<25 { try await Task.sleep(for: .milliseconds(100)) }
      let later = try Profiler.shared.taskDumpSynchronously(suspendedFor: .seconds(2))
      let found = Self.samples(later).filter { Self.chain(later, $0).contains { $0.contains("taskDumpUnstructuredLeaf") } }
      #expect(found.count == 1)
      #expect((found.first?.numericLabels["suspended_seconds"] ?? 0) >= 2)
      parking.releaseAll()
      await parked.value
    }
  

    /// Issue 35: a task-scoped wall profile counts the scope's time off
    /// threads. 300 ms in Task.sleep then 100 ms of CPU: 75 % / 25 %.
    @Test func scopedWallProfilesCountSuspendedTime() async throws {
      Profiler.shared.prepareTaskDump()
      _ = try Profiler.shared.taskDumpSynchronously()  // calibrated
      var sleeping: Double = 0
      var burning: Double = 0
      for _ in 0..<2 {
        let session = try Profiler.shared.startTaskScoped(mode: .wall, interval: .milliseconds(5))
        let value = await session.withScope { await taskWallRequest() }
        let profile = try await session.stop()
        #expect(value != 0)
        var total: Int64 = 0
        var inSleep: Int64 = 0
        var inBurn: Int64 = 0
        for thread in profile.threads {
          for sample in thread.samples where !sample.isIdle || thread.id == Int32.max - 1 {
            let names = profile.names(ofStack: sample.stack)
            guard names.contains(where: { $0.contains("taskWallRequest") }) else { continue }
            total += sample.values[0]
            if names.contains(where: { $0.contains("taskWallSleeper") }) { inSleep += sample.values[0] }
            if names.contains(where: { $0.contains("taskWallBurner") }) { inBurn += sample.values[0] }
          }
        }
        // `top` says how much of each function's time its task was waiting.
        let top = TopFunctions(profile).render(limit: 500)
        let sleeperRow = top.split(separator: "\n").first { $0.contains("taskWallSleeper") } ?? ""
        let burnerRow = top.split(separator: "\n").first { $0.contains("taskWallBurner") } ?? ""
        #expect(top.contains("waiting%") && sleeperRow.contains("100.0%"), "\(top)")
        #expect(burnerRow.contains("  0.0%"), "\(top)")
        let marker = profile.functions.contains { $0.name == "[suspended: sleep]" }
        print("scoped wall: \(total) samples under the request, \(inSleep) sleeping, \(inBurn) burning; marker \(marker)")
        #expect(marker)
        sleeping += Double(inSleep) / Double(max(total, 1))
        burning += Double(inBurn) / Double(max(total, 1))
      }
      #expect(abs(sleeping / 2 - 0.75) <= 0.10, "sleeping \(sleeping / 2)")
      #expect(abs(burning / 2 - 0.25) <= 0.10, "burning \(burning / 2)")
    }

    /// A task waiting for an actor busy with another caller: `[enqueued]`.
    @Test func waitingForABusyActorIsEnqueuedTime() async throws {
      Profiler.shared.prepareTaskDump()
      _ = try Profiler.shared.taskDumpSynchronously()  // calibrated (the test may run first)
      let actor = TaskWallBusyActor()
      let session = try Profiler.shared.startTaskScoped(mode: .wall, interval: .milliseconds(5))
      let busy = Task.detached { await actor.hold(milliseconds: 400) }
      // The other caller holds the actor first (a loaded pool may start it late).
      for _ in 0..<500 where !actor.holding.load(ordering: .acquiring) { try await Task.sleep(for: .milliseconds(2)) }
      _ = await session.withScope { await taskWallActorCaller(actor) }
      let profile = try await session.stop()
      _ = await busy.value
      var enqueued: Int64 = 0
      for thread in profile.threads {
        for sample in thread.samples {
          let names = profile.names(ofStack: sample.stack)
          if names.last == "[enqueued]" || names.last == "[suspended: actor]" { enqueued += sample.values[0] }
        }
      }
      print("waiting for the busy actor: \(enqueued) samples of 5 ms")
      #expect(enqueued >= 20, "\(profile.functions.map(\.name).filter { $0.hasPrefix("[") })")
    }

    /// Dumps while tasks are created and end as fast as two workers can:
    /// every dump answers, none crashes on a task freed while it is read
    /// (the benchmark runs 1,000: BENCHMARKS.md).
    @Test func dumpsDuringTaskChurn() async throws {
      let stop = StopFlag()
      let dumps = Mutex<(done: Int, failed: Int)>((0, 0))
      let dumper = TestThread(name: "task-dumper") {
        for _ in 0..<40 {
          do {
            let dump = try Profiler.shared.taskDumpSynchronously()
            dumps.withLock { $0.done += dump.threads.isEmpty ? 0 : 1 }
          } catch {
            dumps.withLock { $0.failed += 1 }
          }
        }
        stop.set()
      }
      var created = 0
      while !stop.isSet {
        await withTaskGroup(of: Int.self) { group in
          for worker in 0..<2 {
            group.addTask {
              var count = 0
              for _ in 0..<20 {
                await withTaskGroup(of: Int.self) { inner in
                  for index in 0..<32 { inner.addTask { index &+ worker } }
                  for await _ in inner { count += 1 }
                }
              }
              return count
            }
          }
          for await count in group { created += count }
        }
      }
      dumper.join()
      let result = dumps.withLock { $0 }
      print("task churn during dumps: \(created) tasks, \(result.done) dumps, \(result.failed) failed")
      #expect(result.done == 40 && result.failed == 0)
      #expect(created > 1000)
    }

    /// An allocation profile redirects malloc and free everywhere; for the
    /// registry's two entries it redirects the registry's onward pointers,
    /// so tasks created and ended during it are still known, and after it.
    /// The tasks' allocations are charged to their creator, not the wrapper.
    @Test func tasksAreKnownDuringAndAfterAnAllocationProfile() async throws {
      var options = SessionOptions()
      options.allocationSamplingRate = 1
      let session = try Profiler.shared.start(mode: .alloc, options: options)
      let parking = Parking()
      let during = (0..<5).map { _ in Task { await taskDumpUnstructuredCaller(parking) } }
      for _ in 0..<500 where parking.count < 5 { try await Task.sleep(for: .milliseconds(10)) }
      // A task that has just handed its continuation over may still be
      // running (on its way to suspend) for a moment — longer with every
      // allocation sampled: dumps until all five are suspended (≤ 2 s).
      var listed: [Profile.Sample] = []
      var states: [String] = []
      for _ in 0..<40 {
        let dump = try Profiler.shared.taskDumpSynchronously()
        listed = Self.samples(dump).filter { Self.chain(dump, $0).contains { $0.hasPrefix("AppProfilerTests.taskDumpUnstructuredLeaf") } }
        states = Self.samples(dump).map { "\($0.labels["state"] ?? "?"): \(Self.chain(dump, $0).prefix(3).joined(separator: " < "))" }
        if listed.count == 5 { break }
        try await Task.sleep(for: .milliseconds(50))
      }
      #expect(listed.count == 5, "\(states)")
      let profile = try await session.stop()
      var leaves: [String] = []
      for thread in profile.threads {
        for sample in thread.samples {
          let names = profile.functionsOfStack(sample.stack).map { profile.functions[$0] }.filter { !$0.isAllocatedType }.map(\.name)
          if names.contains(where: { $0.contains("swift_task_create_common") }), let leaf = names.last { leaves.append(leaf) }
        }
      }
      #expect(!leaves.isEmpty)
      #expect(!leaves.contains { $0.contains("cap_task_malloc") }, "\(Set(leaves))")
      parking.releaseAll()
      for task in during { await task.value }
      let after = try Profiler.shared.taskDumpSynchronously()
      #expect(!Self.samples(after).contains { Self.chain(after, $0).contains { $0.hasPrefix("AppProfilerTests.taskDumpUnstructuredLeaf") } })
      // New tasks after the profile: listed again.
      let parkingAgain = Parking()
      let again = Task { await taskDumpUnstructuredCaller(parkingAgain) }
      for _ in 0..<500 where parkingAgain.count < 1 { try await Task.sleep(for: .milliseconds(10)) }
      try await Task.sleep(for: .milliseconds(50))
      let third = try Profiler.shared.taskDumpSynchronously()
      #expect(Self.samples(third).filter { Self.chain(third, $0).contains { $0.hasPrefix("AppProfilerTests.taskDumpUnstructuredLeaf") } }.count == 1)
      parkingAgain.releaseAll()
      await again.value
    }
  }
}
