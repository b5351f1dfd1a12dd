import CAppProfiler
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Wall time of the tasks of task-scoped wall sessions while they are on no
/// thread (docs/tasks.md, "Where a request's time went"). The signal
/// sampler sees a task only while a thread runs it; at every drain of the
/// wall sampler, each task of an active scope that is suspended or enqueued
/// adds one sample per elapsed interval: its await chain under a marker
/// naming what it waits on (`[suspended: sleep]`, `[enqueued]`…).
///
/// A scope's tasks: the tasks that entered it (`withScope`), their async-let
/// children (status records), and every task created while the scope is
/// active whose task-local labels carry the scope (found in the task
/// registry, each new task read once). Reads are system-call reads.
final class TaskWall: Sendable {
  static let shared = TaskWall()

  struct Scope {
    var interval: UInt64
    /// When the last pass counted this scope's time, and the remainder.
    var last: UInt64
    var carry: UInt64 = 0
    /// Task → its label id (with the scope).
    var tasks: [UInt64: UInt64] = [:]
    var roots: [UInt64: (labelID: UInt64, entries: Int)] = [:]
  }

  /// Sessions counting every task (``SessionOptions/includesSuspendedTasks``)
  /// on one wall sampler (the on-demand one, the flight recorder's): each
  /// sampler's drain counts its own elapsed time at its own interval.
  struct Process {
    var sessions = 0
    var interval: UInt64 = 10_000_000
    var last: UInt64 = 0
    var carry: UInt64 = 0
    /// Where the next pass starts in the registry's list (round robin).
    var cursor = 0
  }

  /// Tasks read per pass for whole-process sessions; the others are
  /// represented by the weight of those read.
  static let processTasksPerPass = 64

  struct Waiting {
    var function: UInt64
    var context: UInt64
    var flags: UInt32
    var frames: [UInt64]
    var labelID: UInt64
  }

  struct State {
    var scopes: [UInt32: Scope] = [:]
    /// By sampler slot.
    var processes: [SamplerSlotID: Process] = [:]
    /// Cost of the passes, for the benchmark.
    var passes: UInt64 = 0
    var passNanoseconds: UInt64 = 0
    /// Tasks that only wait for work they handed to another task of their
    /// scope (``Profiler/withDelegatedWait(operation:)``): left out.
    var delegating: [UInt64: Int] = [:]
    /// Registry entries seen by the last scan (new ones are read once).
    var scanned: Set<UInt64> = []
    var images: ImageMap? = nil
    var imagesAt: UInt64 = 0
    /// Resume function → "is it Task.sleep's" (names resolved once).
    var sleeps: [UInt64: Bool] = [:]
    /// Whole-process passes: what a task read last time gave, reused while
    /// it waits at the same point (one read of its header instead of its
    /// chain and labels).
    var seenWaiting: [UInt64: Waiting] = [:]
    var registry = [cap_task_entry](repeating: cap_task_entry(), count: 1024)
    var registryLive = 0
    var registryAt: UInt64 = 0

    var consumers: Int { scopes.count + processes.count }
  }

  private let state = Mutex(State())
  private let active = Atomic<Int>(0)

  /// A task-scoped wall session started.
  func begin(scope: UInt32, interval: Duration) {
    let nanoseconds = UInt64(interval.components.seconds) &* 1_000_000_000
      &+ UInt64(interval.components.attoseconds / 1_000_000_000)
    state.withLock { state in
      state.scopes[scope] = Scope(interval: max(nanoseconds, 100_000), last: ProfilingSession.clock(CLOCK_MONOTONIC))
      active.store(state.consumers, ordering: .releasing)
    }
  }

  /// It stopped (after its last drain).
  func end(scope: UInt32) {
    state.withLock { state in
      state.scopes[scope] = nil
      if state.scopes.isEmpty { state.scanned = [] }
      active.store(state.consumers, ordering: .releasing)
    }
  }

  /// A whole-process wall session of slot `slot` that
  /// counts every task started / ended. Sessions of one sampler share its
  /// interval.
  func beginProcess(slot: SamplerSlotID, interval: Duration) {
    let nanoseconds = UInt64(interval.components.seconds) &* 1_000_000_000
      &+ UInt64(interval.components.attoseconds / 1_000_000_000)
    state.withLock { state in
      var process = state.processes[slot] ?? Process(
        sessions: 0, interval: max(nanoseconds, 100_000), last: ProfilingSession.clock(CLOCK_MONOTONIC))
      process.sessions += 1
      state.processes[slot] = process
      active.store(state.consumers, ordering: .releasing)
    }
  }

  func endProcess(slot: SamplerSlotID) {
    state.withLock { state in
      if var process = state.processes[slot] {
        process.sessions -= 1
        state.processes[slot] = process.sessions > 0 ? process : nil
      }
      if state.processes.isEmpty { state.seenWaiting = [:] }
      active.store(state.consumers, ordering: .releasing)
    }
  }

  /// Passes so far and their mean cost (benchmark).
  var passCost: (passes: UInt64, meanNanoseconds: Double) {
    state.withLock { ($0.passes, $0.passes == 0 ? 0 : Double($0.passNanoseconds) / Double($0.passes)) }
  }

  /// The calling task runs in `scope` until ``leave(scope:)``.
  func enter(scope: UInt32, labelID: UInt64) {
    guard active.load(ordering: .acquiring) > 0, let task = AsyncRuntime.currentTask() else { return }
    state.withLock { state in
      guard state.scopes[scope] != nil else { return }
      let entries = state.scopes[scope]!.roots[task]?.entries ?? 0
      state.scopes[scope]!.roots[task] = (labelID, entries + 1)
    }
  }

  func leave(scope: UInt32) {
    guard active.load(ordering: .acquiring) > 0, let task = AsyncRuntime.currentTask() else { return }
    state.withLock { state in
      guard let root = state.scopes[scope]?.roots[task] else { return }
      state.scopes[scope]!.roots[task] = root.entries > 1 ? (root.labelID, root.entries - 1) : nil
    }
  }

  var isActive: Bool { active.load(ordering: .acquiring) > 0 }

  func delegate(_ task: UInt64, _ change: Int) {
    state.withLock { state in
      let count = (state.delegating[task] ?? 0) + change
      state.delegating[task] = count > 0 ? count : nil
    }
  }

  /// One pass: adds the samples of every waiting task of the active scopes
  /// to `collector` (the wall sampler's, at its drain).
  func sample(into collector: inout SampleCollector, slot: SamplerSlotID) {
    guard isActive, case .supported(let layout) = TaskRuntime.support else { return }
    let now = ProfilingSession.clock(CLOCK_MONOTONIC)
    state.withLock { state in
      // Scopes are sampled by the on-demand wall sampler's drain only.
      let scopes = slot == .wall && !state.scopes.isEmpty
      guard scopes || state.processes[slot] != nil else { return }
      // The registry's entries, into a buffer kept from pass to pass: at
      // every pass for scopes (their new tasks), else every 250 ms — the
      // whole-process passes read 64 tasks of it each, and a task that
      // ended since is told by its header (freed memory has no task's isa;
      // reused memory is another live task), never a fault.
      if scopes || now &- state.registryAt >= 250_000_000 || state.registryLive == 0 {
        var live = state.registry.withUnsafeMutableBufferPointer {
          cap_task_registry_copy($0.baseAddress, UInt64($0.count))
        }
        if live > UInt64(state.registry.count) {
          state.registry = [cap_task_entry](repeating: cap_task_entry(), count: Int(live) * 2)
          live = state.registry.withUnsafeMutableBufferPointer { cap_task_registry_copy($0.baseAddress, UInt64($0.count)) }
        }
        state.registryLive = Int(min(live, UInt64(state.registry.count)))
        state.registryAt = now
      }
      let entries = state.registry.prefix(state.registryLive)
      // Read once; again when a resume address is in no known image (a
      // library loaded since), at most once a second.
      if state.images == nil { (state.images, state.imagesAt) = (ImageMap.current(), now) }
      let images = state.images!
      // New tasks: which scope their labels carry.
      let labelKey = TaskLabels.key
      let labelHead = TaskLabels.headOffset.map { UInt64($0) }
      var present = Set<UInt64>()
      if scopes { present.reserveCapacity(entries.count) }
      for entry in entries where scopes {
        present.insert(entry.task)
        guard !state.scanned.contains(entry.task) else { continue }
        state.scanned.insert(entry.task)
        guard let labelKey, let labelHead else { continue }
        let labelID = TaskDump.taskLabelID(entry.task, key: labelKey, headOffset: labelHead)
        let scope = LabelScope.of(labelID: labelID)
        if scope != 0, state.scopes[scope] != nil { state.scopes[scope]!.tasks[entry.task] = labelID }
      }
      if scopes { state.scanned.formIntersection(present) }
      for (scope, var current) in scopes ? state.scopes : [:] {
        current.tasks = current.tasks.filter { present.contains($0.key) }
        let elapsed = now &- current.last &+ current.carry
        let ticks = elapsed / current.interval
        current.carry = elapsed % current.interval
        current.last = now
        if ticks > 0 {
          var pending: [(task: UInt64, labelID: UInt64)] = current.tasks.map { ($0.key, $0.value) }
          pending += current.roots.map { ($0.key, $0.value.labelID) }
          var seen = Set<UInt64>()
          while let (task, labelID) = pending.popLast() {
            guard seen.insert(task).inserted, seen.count < 100_000 else { continue }
            guard let bytes = TaskMemory.bytes(task, count: layout.taskSize + 16), bytes.word(at: 0) == layout.metadata
            else { continue }
            // Async-let children (not in the registry) share the scope.
            for child in Self.asyncLetChildren(bytes, layout: layout) { pending.append((child, labelID)) }
            let flags = bytes.word32(at: TaskLayout.statusFlags)
            if flags & (TaskLayout.running | TaskLayout.complete) != 0 || state.delegating[task] != nil { continue }
            // A task awaiting a task or group of its own scope adds nothing:
            // the awaited tasks are sampled themselves.
            let waiting = TaskDump.waitingOn(bytes, flags: flags)
            if waiting == "group" { continue }
            if waiting == "task", let record = TaskMemory.word(bytes.word(at: TaskLayout.dependencyRecord) &+ 16),
              current.tasks[record] != nil || current.roots[record] != nil || seen.contains(record)
                || Self.asyncLetChildren(bytes, layout: layout).contains(record)
            {
              continue
            }
            let walk = TaskDump.chainWalk(bytes, layout: layout)
            var frames = Self.codeFrames(walk.frames.map { $0 &- 1 }, &state, now: now)
            if walk.broken || frames.isEmpty { frames.append(SyntheticFrame.asyncBroken.rawValue) }
            let marker = Self.marker(
              bytes, flags: flags, layout: layout, leaf: walk.frames.first.map { $0 &- 1 }, state: &state, images: images)
            collector.addTaskSample(
              frames: [marker.rawValue] + frames, labelID: labelID, count: ticks, timestamp: now, task: task)
          }
        }
        state.scopes[scope] = current
      }
      if var process = state.processes[slot] {
        samplePassOfEveryTask(entries, now: now, layout: layout, images: images, &process, &state, &collector)
        state.processes[slot] = process
      }
      state.passes += 1
      state.passNanoseconds += ProfilingSession.clock(CLOCK_MONOTONIC) &- now
    }
  }

  /// Whole-process sessions: up to ``processTasksPerPass`` tasks of the
  /// registry, round robin, each waiting one weighted by the tasks not read.
  private func samplePassOfEveryTask(
    _ entries: ArraySlice<cap_task_entry>, now: UInt64, layout: TaskLayout, images: ImageMap, _ process: inout Process,
    _ state: inout State, _ collector: inout SampleCollector
  ) {
    let elapsed = now &- process.last &+ process.carry
    let ticks = elapsed / process.interval
    process.carry = elapsed % process.interval
    process.last = now
    guard ticks > 0, !entries.isEmpty else { return }
    let count = min(Self.processTasksPerPass, entries.count)
    let weight = ticks &* UInt64(entries.count) / UInt64(count)
    let labelKey = TaskLabels.key
    let labelHead = TaskLabels.headOffset.map { UInt64($0) }
    let start = entries.startIndex
    let chosen = (0..<count).map { entries[start + (process.cursor + $0) % entries.count] }
    // The headers up to the status record (isa, resume point, flags), in one read.
    let headerSize = TaskLayout.statusRecord
    let headers = TaskMemory.regions(chosen.map(\.task), count: headerSize)
    for (index, entry) in chosen.enumerated() {
      // A task waiting only for work it handed to another (a middleware's
      // wait for the route's task) would count that time twice.
      if state.delegating[entry.task] != nil { continue }
      guard headers.ok[index] != 0 else { continue }
      let header = Array(headers.bytes[index * headerSize..<(index + 1) * headerSize])
      guard header.word(at: 0) == layout.metadata else { continue }
      let flags = header.word32(at: TaskLayout.statusFlags)
      if flags & (TaskLayout.running | TaskLayout.complete) != 0 {
        state.seenWaiting[entry.task] = nil
        continue
      }
      let function = header.word(at: TaskLayout.resumeFunction)
      let context = header.word(at: TaskLayout.resumeContext)
      if let known = state.seenWaiting[entry.task], known.function == function, known.context == context,
        known.flags == flags
      {
        if known.frames.isEmpty { continue }
        collector.addTaskSample(
          frames: known.frames, labelID: known.labelID, count: weight, timestamp: now, task: entry.task,
          thread: SampleCollector.allTasksThread)
        continue
      }
      guard let bytes = TaskMemory.bytes(entry.task, count: layout.taskSize + 16), bytes.word(at: 0) == layout.metadata
      else { continue }
      let walk = TaskDump.chainWalk(bytes, layout: layout)
      var frames = Self.codeFrames(walk.frames.map { $0 &- 1 }, &state, now: now)
      if walk.broken || frames.isEmpty { frames.append(SyntheticFrame.asyncBroken.rawValue) }
      let leaf = walk.frames.first.map { $0 &- 1 }
      let marker = Self.marker(bytes, flags: flags, layout: layout, leaf: leaf, state: &state, images: images)
      // `Task.sleep`'s timer is a task of its own, enqueued with a deadline
      // until the sleeper wakes; the sleeper is counted (`[suspended:
      // sleep]`), its timer would count the same time again.
      if marker == .enqueued, let leaf, Self.isSleep(leaf, &state, images: images) {
        state.seenWaiting[entry.task] = Waiting(function: function, context: context, flags: flags, frames: [], labelID: 0)
        continue
      }
      var labelID: UInt64 = 0
      if let labelKey, let labelHead { labelID = TaskDump.taskLabelID(entry.task, key: labelKey, headOffset: labelHead) }
      let sample = [marker.rawValue] + frames
      state.seenWaiting[entry.task] = Waiting(
        function: function, context: context, flags: flags, frames: sample, labelID: labelID)
      collector.addTaskSample(
        frames: sample, labelID: labelID, count: weight, timestamp: now, task: entry.task,
        thread: SampleCollector.allTasksThread)
    }
    process.cursor = (process.cursor + count) % entries.count
    // Forget tasks that ended (once per turn of the round robin).
    if process.cursor < count && state.seenWaiting.count > entries.count {
      let live = Set(entries.map(\.task))
      state.seenWaiting = state.seenWaiting.filter { live.contains($0.key) }
    }
  }
}
