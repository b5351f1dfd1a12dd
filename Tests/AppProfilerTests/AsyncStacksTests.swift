import AppProfiler
import CAppProfiler
import Foundation
import Synchronization
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

final class AsyncBox: @unchecked Sendable {
  var value: Int
  init(_ value: Int) { self.value = value }
}

nonisolated(unsafe) var asyncSink: AsyncBox? = nil

@inline(never) func keepBox(_ box: AsyncBox) { asyncSink = box }

@inline(never) @_optimize(speed) func allocatingInner(_ stop: StopFlag) async -> Int {
  await Task.yield()
  var total = 0
  while !stop.isSet {
    for i in 0..<1_000 {
      let box = AsyncBox(i)  // allocated by this partial function itself
      keepBox(box)
      total &+= box.value
    }
  }
  return total
}

@inline(never) @_optimize(speed) func allocatingMiddle(_ stop: StopFlag) async -> Int {
  let r = await allocatingInner(stop)
  return r &+ 1
}

@inline(never) @_optimize(speed) func allocatingOuter(_ stop: StopFlag) async -> Int {
  let r = await allocatingMiddle(stop)
  return r &+ 2
}

@inline(never) func asyncLetChild(_ stop: StopFlag) async -> Int {
  await Task.yield()
  return asyncBurnLoop(stop)
}

@inline(never) func asyncLetParent(_ stop: StopFlag) async -> Int {
  async let child = asyncLetChild(stop)
  return await child
}

@inline(never) func groupChild(_ stop: StopFlag) async -> Int {
  await Task.yield()
  return asyncBurnLoop(stop)
}

@inline(never) func groupParent(_ stop: StopFlag) async -> Int {
  await withTaskGroup(of: Int.self) { group in
    group.addTask { await groupChild(stop) }
    return await group.next() ?? 0
  }
}

@inline(never) func continuationInner(_ stop: StopFlag) async -> Int {
  await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
    // Resumed from a thread of its own: the task goes on on the executor.
    let thread = TestThread(name: "resumer") {
      usleep(10_000)
      continuation.resume()
    }
    thread.detach()
  }
  return asyncBurnLoop(stop)
}

@inline(never) func continuationOuter(_ stop: StopFlag) async -> Int {
  let r = await continuationInner(stop)
  return r &+ 1
}

/// The runtime's own answer (`swift_task_getCurrent`: no arguments, a
/// pointer back, the same in the Swift and C conventions).
func runtimeCurrentTask() -> UnsafeMutableRawPointer? {
  typealias GetCurrent = @convention(c) () -> UnsafeMutableRawPointer?
  guard let symbol = dlsym(nil, "swift_task_getCurrent") else { return nil }
  return unsafeBitCast(symbol, to: GetCurrent.self)()
}

extension SamplingSuite {
  @Suite struct AsyncStacks {
    /// Runs `work` as a detached task, profiles `mode` for `seconds` once it
    /// had time to suspend, stops it.
    func profile(
      _ mode: Profile.Mode, seconds: Int = 2, options: SessionOptions = SessionOptions(),
      _ work: @escaping @Sendable (StopFlag) async -> Int
    ) async throws -> Profile {
      let stop = StopFlag()
      let task = Task.detached { await work(stop) }
      try await Task.sleep(for: .milliseconds(100))
      let session = try Profiler.shared.start(mode: mode, interval: .milliseconds(1), options: options)
      try await Task.sleep(for: .seconds(seconds))
      let profile = try await session.stop()
      stop.set()
      _ = await task.value
      return profile
    }

    func expectChain(
      _ profile: Profile, leaf: String, callers: [String], share minimum: Double = 0.95,
      sourceLocation: SourceLocation = #_sourceLocation
    ) {
      let share = profile.chainShare(leaf: leaf, callers: callers)
      let example = profile.threads.flatMap(\.samples).first {
        profile.names(ofStack: $0.stack).contains { $0.contains(leaf) }
      }.map { profile.names(ofStack: $0.stack).joined(separator: " > ") } ?? "none"
      print("async \(profile.mode.rawValue) \(callers.joined(separator: ">"))>\(leaf): \(share.withChain) of \(share.total); e.g. \(example)")
      #expect(share.total >= 20, "too few samples in \(leaf)", sourceLocation: sourceLocation)
      // TSan runs signal handlers late, at a safe point, with the registers
      // of a thread that has moved on: there the run checks that nothing
      // breaks and TSan reports nothing, not the share.
      if underThreadSanitizer { return }
      #expect(
        Double(share.withChain) >= minimum * Double(share.total),
        "\(share.withChain) of \(share.total) samples show \(callers)", sourceLocation: sourceLocation)
    }

    @Test(arguments: [false, true])
    func cpuProfileShowsTheAwaitingCallers(optimized: Bool) async throws {
      let profile = try await self.profile(.cpu) { stop in
        optimized ? await optimizedOuter(stop) : await asyncOuter(stop)
      }
      let prefix = optimized ? "optimized" : "async"
      // Reads of contexts and TLS outside the memory snapshot ask for a new
      // one; a chain that kept missing would re-read /proc/self/maps on
      // every tick.
      let snapshots = Int(profile.metadata["memory_map_snapshots"] ?? "") ?? -1
      print("async cpu: memory_map_snapshots=\(snapshots)")
      #expect(snapshots >= 1 && snapshots <= 20, "\(snapshots) snapshots of /proc/self/maps in 2 s")
      expectChain(profile, leaf: "asyncBurnLoop", callers: ["\(prefix)Outer", "\(prefix)Middle", "\(prefix)Inner"])
      // Root to leaf: the executor, then the marker, then the task's functions.
      let stack = profile.threads.flatMap(\.samples).map { profile.names(ofStack: $0.stack) }.first {
        $0.contains { $0.contains("asyncBurnLoop") }
      } ?? []
      // Facts of this toolchain the stitching relies on: the frame above the
      // marker is the runtime's executor function that called the task's
      // resume function; the walk goes on through it to the thread's root
      // (no extended-frame bit in the async frame's saved rbp on Linux,
      // which would end a frame-pointer step there).
      let marker = stack.firstIndex(of: "[async]")
      #expect(marker != nil)
      if let marker, marker > 0 {
        #expect(stack[marker - 1].contains("runJobInEstablishedExecutorContext"), "\(stack)")
        #expect(stack[(marker + 1)...].contains { $0.contains("\(prefix)Outer") })
        #expect(stack.first?.contains("clone3") == true || stack.first?.contains("start_thread") == true, "\(stack)")
      }
    }

    @Test func wallProfileShowsTheAwaitingCallers() async throws {
      let profile = try await self.profile(.wall) { stop in await optimizedOuter(stop) }
      expectChain(profile, leaf: "asyncBurnLoop", callers: ["optimizedOuter", "optimizedMiddle", "optimizedInner"])
    }

    @Test func allocationProfileShowsTheAwaitingCallers() async throws {
      var options = SessionOptions()
      options.allocationSamplingRate = 16_384
      let profile = try await self.profile(.alloc, options: options) { stop in await allocatingOuter(stop) }
      expectChain(profile, leaf: "AsyncBox", callers: ["allocatingOuter", "allocatingMiddle", "allocatingInner"])
    }

    @Test func childTasksShowTheChildFunction() async throws {
      let asyncLet = try await self.profile(.cpu, seconds: 1) { stop in await asyncLetParent(stop) }
      expectChain(asyncLet, leaf: "asyncBurnLoop", callers: ["[async]", "asyncLetChild"])
      let group = try await self.profile(.cpu, seconds: 1) { stop in await groupParent(stop) }
      expectChain(group, leaf: "asyncBurnLoop", callers: ["[async]", "groupChild"])
    }

    @Test func continuationResumedFromAnotherThread() async throws {
      let profile = try await self.profile(.cpu, seconds: 1) { stop in await continuationOuter(stop) }
      expectChain(profile, leaf: "asyncBurnLoop", callers: ["[async]", "continuationOuter", "continuationInner"])
    }

    @Test func stitchingCanBeTurnedOff() async throws {
      var options = SessionOptions()
      options.asyncStacks = false
      let profile = try await self.profile(.cpu, seconds: 1, options: options) { stop in await optimizedOuter(stop) }
      let share = profile.chainShare(leaf: "asyncBurnLoop", callers: ["optimizedOuter"])
      #expect(share.total >= 20)
      #expect(share.withChain == 0)
      #expect(profile.count(containing: "[async]") == 0)
      #expect(profile.metadata["async_stitched_samples"] == "0")
    }

    @Test func samplesCarryTheRunningTask() async throws {
      let stop = StopFlag()
      let started = TaskPointer()
      let task = Task.detached { () -> Int in
        started.set(runtimeCurrentTask())
        await Task.yield()
        return asyncBurnLoop(stop)
      }
      try await Task.sleep(for: .milliseconds(100))
      let session = try Profiler.shared.start(mode: .cpu, interval: .milliseconds(1))
      try await Task.sleep(for: .seconds(1))
      let profile = try await session.stop()
      stop.set()
      _ = await task.value
      let expected = Int64(bitPattern: UInt64(UInt(bitPattern: started.get())))
      var burning: Int64 = 0
      var labelled: Int64 = 0
      for thread in profile.threads {
        for sample in thread.samples where profile.names(ofStack: sample.stack).contains(where: { $0.contains("asyncBurnLoop") }) {
          burning += profile.count(sample)
          if sample.numericLabels["task"] == expected { labelled += profile.count(sample) }
        }
      }
      #expect(expected != 0)
      #expect(burning >= 20)
      #expect(Double(labelled) >= 0.95 * Double(burning), "\(labelled) of \(burning) samples name the task")
      // A thread that runs no task has no task label.
      let plain = profile.threads.flatMap(\.samples).filter {
        profile.names(ofStack: $0.stack).contains { $0.contains("DrainThread") || $0.contains("epoll_wait") }
      }
      #expect(plain.allSatisfy { $0.numericLabels["task"] == nil })
    }
  }
}

// Task churn: short tasks, each a chain of `depth` async calls that suspend
// at random levels.
@inline(never) @_optimize(speed) func churnLevel(_ depth: Int, _ seed: UInt64) async -> UInt64 {
  if seed & 1 == 0 { await Task.yield() }
  if depth == 0 {
    var x = seed
    for i in 0..<64 { x = x &* 6_364_136_223_846_793_005 &+ UInt64(i) }
    return x
  }
  return await churnLevel(depth - 1, seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407) &+ 1
}

/// Creates and finishes tasks until `stop`; returns how many.
@inline(never) func churnTasks(_ stop: StopFlag, seed: UInt64) async -> Int {
  var created = 0
  var seed = seed
  while !stop.isSet {
    await withTaskGroup(of: UInt64.self) { group in
      for _ in 0..<64 {
        seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        let taskSeed = seed
        group.addTask { await churnLevel(Int((taskSeed >> 33) % 24), taskSeed >> 7) }
      }
      for await _ in group {}
    }
    created += 64
  }
  return created
}

extension SamplingSuite.AsyncStacks {
  /// Many short profiles at 1 kHz of a process that creates and finishes
  /// tasks as fast as it can (random depths, random suspensions): nothing
  /// crashes, and chains that end in a marker are rare.
  /// `APP_PROFILER_ASYNC_STRESS_PROFILES` sets the count (default 1,000).
  @Test func manyProfilesOfTaskChurn() async throws {
    let count = ProcessInfo.processInfo.environment["APP_PROFILER_ASYNC_STRESS_PROFILES"].flatMap(Int.init) ?? 1_000
    let stop = StopFlag()
    let started = ContinuousClock.now
    let drivers = (0..<2).map { index in
      Task.detached { await churnTasks(stop, seed: UInt64(index) &+ 0x9E37_79B9) }
    }
    var samples: Int64 = 0
    var truncated: Int64 = 0
    var broken: Int64 = 0
    var stitched: Int64 = 0
    for _ in 0..<count {
      let profile = try Profiler.shared.recordSynchronously(mode: .cpu, duration: .milliseconds(20), interval: .milliseconds(1))
      samples += profile.totalCount
      truncated += profile.count(containing: "[truncated]")
      broken += profile.count(containing: "[async chain unreadable]")
      stitched += Int64(profile.metadata["async_stitched_samples"] ?? "") ?? 0
    }
    stop.set()
    var tasks = 0
    for driver in drivers { tasks += await driver.value }
    let seconds = Double((ContinuousClock.now - started).components.seconds) + 1e-18 * Double((ContinuousClock.now - started).components.attoseconds)
    print("async stress: \(count) profiles in \(Int(seconds)) s, \(Int(Double(tasks) / seconds)) tasks/s, \(samples) samples, \(stitched) stitched, \(truncated) truncated, \(broken) unreadable chains")
    #expect(samples > Int64(count))
    #expect(stitched > 0)
    #expect(Double(truncated + broken) <= 0.001 * Double(samples), "\(truncated) truncated + \(broken) broken of \(samples)")
  }
}

/// The C reader of the task's TLS slot agrees with the runtime.
@Suite struct AsyncRuntimeTests {
  @Test func theTaskSlotIsFoundAndReadLikeTheRuntimeReadsIt() async throws {
    guard let getCurrent = dlsym(nil, "swift_task_getCurrent") else {
      Issue.record("no swift_task_getCurrent")
      return
    }
    var module: UInt64 = 0
    var offset: UInt64 = 0
    #expect(cap_task_tls_locate(getCurrent, &module, &offset) == 1)
    #expect(module > 0)
    let (tlsModule, tlsOffset) = (module, offset)
    let inTask = UInt64(UInt(bitPattern: runtimeCurrentTask()))
    #expect(inTask != 0)
    #expect(cap_current_task_for_test(tlsModule, tlsOffset) == inTask)
    // A thread that never ran a task.
    let outside = TaskPointer()
    let thread = TestThread(name: "no-task") {
      outside.set(UnsafeMutableRawPointer(bitPattern: UInt(cap_current_task_for_test(tlsModule, tlsOffset))))
    }
    thread.join()
    #expect(outside.get() == nil)
  }
}

final class TaskPointer: Sendable {
  private let value = Mutex<UInt>(0)
  func set(_ pointer: UnsafeMutableRawPointer?) { value.withLock { $0 = UInt(bitPattern: pointer) } }
  func get() -> UnsafeMutableRawPointer? { UnsafeMutableRawPointer(bitPattern: value.withLock { $0 }) }
}
