import AppProfilerFormats
import CAppProfiler
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Every live Swift task with its await chain (docs/tasks.md): the tasks
/// the registry knows (task_registry_linux.c), their async-let children
/// (through the parents' status records), each read with system-call reads
/// (a task freed meanwhile is skipped, never a fault). Runs on the calling
/// thread; needs neither the cooperative pool nor any executor.
enum TaskDump {
  enum WaitingOn {
    static let taskKind: UInt32 = 1
    static let continuationKind: UInt32 = 2
    static let groupKind: UInt32 = 3
    static let executorKind: UInt32 = 4
  }

  /// Caps that keep a dump bounded whatever the memory holds.
  static let maxChain = 256
  static let maxChildren = 100_000
  static let maxStatusRecords = 64

  struct Entry {
    var address: UInt64
    var id: UInt64
    var parent: UInt64 = 0
    var state: String
    var waitingOn: String
    /// Leaf first: where the task resumes, then its async callers (return-address convention: +1).
    var frames: [UInt64]
    var chainBroken = false
    var labels: [String: String] = [:]
    var createdNanoseconds: UInt64? = nil
    var suspendedNanoseconds: UInt64 = 0
    var resumePoint: (function: UInt64, context: UInt64) = (0, 0)
  }

  /// The await chain in a task's bytes: where it resumes, then each
  /// context's ResumeParent up to the task's first context (whose resume
  /// function is the runtime's completion, no caller). Runtime adapters
  /// are left out.
  static func chain(of task: [UInt8], layout: TaskLayout) -> [UInt64] {
    chainWalk(task, layout: layout).frames
  }

  static func chainWalk(_ task: [UInt8], layout: TaskLayout) -> (frames: [UInt64], broken: Bool) {
    var frames: [UInt64] = []
    let resume = task.word(at: TaskLayout.resumeFunction)
    if resume != 0 && !layout.adapters.contains(resume) { frames.append(resume &+ 1) }
    var context = task.word(at: TaskLayout.resumeContext)
    var seen = Set<UInt64>()
    while context != 0 && frames.count < maxChain {
      guard context & 15 == 0, seen.insert(context).inserted,
        let parent = TaskMemory.word(context), let resumeParent = TaskMemory.word(context &+ 8)
      else { return (frames, true) }
      if parent == 0 {
        // A task that has not run yet resumes in the runtime's adapter with
        // its first context, whose prefix names the entry function.
        if frames.isEmpty, layout.entryAdapters.contains(resume), let entry = TaskMemory.word(context &- 24), entry != 0 {
          frames.append(entry &+ 1)
        }
        break
      }
      if !layout.adapters.contains(resumeParent) { frames.append(resumeParent &+ 1) }
      context = parent
    }
    return (frames, false)
  }

  /// Every live task, read now.
  static func collect(layout: TaskLayout) -> (entries: [Entry], registry: cap_task_registry_info, unreadable: Int, completed: Int) {
    var registry = cap_task_registry_info()
    cap_task_registry_status(&registry)
    var buffer = [cap_task_entry](repeating: cap_task_entry(), count: Int(registry.live) + 64)
    while true {
      let live = buffer.withUnsafeMutableBufferPointer { cap_task_registry_copy($0.baseAddress, UInt64($0.count)) }
      if live <= UInt64(buffer.count) {
        buffer.removeLast(buffer.count - Int(live))
        break
      }
      buffer = [cap_task_entry](repeating: cap_task_entry(), count: Int(live) * 2)
    }
    let images = ImageMap.current()
    let labelKey = TaskLabels.key
    let labelHead = TaskLabels.headOffset.map { UInt64($0) }
    var pending: [(task: UInt64, created: UInt64?)] = buffer.map { ($0.task, $0.created_ns) }
    var known = Set(pending.map(\.task))
    var entries: [Entry] = []
    var unreadable = 0
    var completed = 0
    var byAddress: [UInt64: UInt64] = [:]  // task → id, for parent ids
    var parents: [UInt64: UInt64] = [:]    // child → parent task
    let hidden = TaskRuntime.probeTasks
    while let (task, created) = pending.popLast() {
      if hidden.contains(task) { continue }
      guard let bytes = TaskMemory.bytes(task, count: layout.taskSize + 16), bytes.word(at: 0) == layout.metadata else {
        unreadable += 1
        continue
      }
      let flags = bytes.word32(at: TaskLayout.statusFlags)
      // Async-let children: listed by the parent's child records.
      var record = bytes.word(at: TaskLayout.statusRecord)
      for _ in 0..<maxStatusRecords where record != 0 {
        guard let recordFlags = TaskMemory.word(record), let next = TaskMemory.word(record &+ 8) else { break }
        if recordFlags & 0xFF == layout.childRecordKind, var child = TaskMemory.word(record &+ 16) {
          var hops = 0
          while child != 0 && hops < maxChildren && known.count < maxChildren * 10 {
            if known.insert(child).inserted {
              pending.append((child, nil))
              parents[child] = task
            }
            guard let sibling = TaskMemory.word(child &+ UInt64(layout.taskSize) &+ 8) else { break }
            child = sibling
            hops += 1
          }
        }
        record = next
      }
      if flags & TaskLayout.complete != 0 {
        completed += 1
        continue
      }
      let id = UInt64(bytes.word32(at: TaskLayout.idHigh)) << 32 | UInt64(bytes.word32(at: TaskLayout.idLow))
      byAddress[task] = id
      if bytes.word32(at: TaskLayout.jobFlags) & TaskLayout.childTask != 0 {
        parents[task] = bytes.word(at: layout.taskSize)
      }
      // A task that has not run yet (it resumes in the runtime's entry
      // adapter) waits for its first turn: enqueued, or delayed (a sleep's timer).
      let notStarted = layout.entryAdapters.contains(bytes.word(at: TaskLayout.resumeFunction))
      let state =
        flags & TaskLayout.running != 0
        ? "running" : flags & TaskLayout.enqueued != 0 || notStarted ? "enqueued" : "suspended"
      var entry = Entry(address: task, id: id, state: state, waitingOn: "unknown", frames: [])
      entry.createdNanoseconds = created
      entry.resumePoint = (bytes.word(at: TaskLayout.resumeFunction), bytes.word(at: TaskLayout.resumeContext))
      if state == "running" {
        // Its context chain is stale while it runs; its thread has the stack.
        entry.waitingOn = "none"
      } else {
        let walk = chainWalk(bytes, layout: layout)
        entry.frames = walk.frames.filter { images.lookup($0 &- 1) != nil }
        entry.chainBroken = walk.broken || entry.frames.count != walk.frames.count
        entry.waitingOn = waitingOn(bytes, flags: flags)
      }
      if let labelKey, let labelHead {
        let id = taskLabelID(task, key: labelKey, headOffset: labelHead)
        if id != 0 { entry.labels = LabelRegistry.shared.labels(for: id) }
      }
      entries.append(entry)
    }
    for index in entries.indices {
      if let parent = parents[entries[index].address] { entries[index].parent = byAddress[parent] ?? 0 }
    }
    return (entries, registry, unreadable, completed)
  }

  static func waitingOn(_ bytes: [UInt8], flags: UInt32) -> String {
    guard flags & TaskLayout.hasDependency != 0 else { return "unknown" }
    let record = bytes.word(at: TaskLayout.dependencyRecord)
    guard record != 0, let kindWord = TaskMemory.word(record &+ 32) else { return "unknown" }
    switch UInt32(truncatingIfNeeded: kindWord) {
    case WaitingOn.taskKind: return "task"
    case WaitingOn.continuationKind: return "continuation"
    case WaitingOn.groupKind: return "group"
    case WaitingOn.executorKind:
      // The generic executor's identity is null; an actor's is the actor.
      let identity = TaskMemory.word(record &+ 16) ?? 0
      return identity == 0 ? "executor" : "actor"
    default: return "unknown"
    }
  }

  /// The label-set id bound to the labels' task-local in `task`'s chain
  /// (its own bindings, then its parents'), 0 for none.
  static func taskLabelID(_ task: UInt64, key: UInt64, headOffset: UInt64) -> UInt64 {
    guard var item = TaskMemory.word(task &+ headOffset) else { return 0 }
    for _ in 0..<64 {
      item &= ~7
      guard item != 0, let itemKey = TaskMemory.word(item &+ 8), let valueType = TaskMemory.word(item &+ 16) else { return 0 }
      if itemKey == key && valueType != 0 {
        guard let box = TaskMemory.word(item &+ 24), box != 0, let id = TaskMemory.word(box &+ 16) else { return 0 }
        return id
      }
      guard let next = TaskMemory.word(item) else { return 0 }
      item = next
    }
    return 0
  }
}

/// How long each task has waited at its await: the first dump (or watch
/// pass) that saw it at this resume point, kept per task. Its clock starts
/// with the first task dump; from then on a thread looks once a second.
enum TaskWatch {
  private struct Seen {
    var function: UInt64
    var context: UInt64
    var since: UInt64
  }
  private static let table = Mutex<[UInt64: Seen]>([:])
  private static let startedAt = Atomic<UInt64>(0)
  static let period: Duration = .seconds(1)

  /// When the clock started (CLOCK_MONOTONIC ns), 0 before the first dump.
  static var clockStart: UInt64 { startedAt.load(ordering: .relaxed) }

  /// Records the resume points now; returns, per task, since when it waits there.
  static func observe(_ points: [(task: UInt64, function: UInt64, context: UInt64)], now: UInt64) -> [UInt64: UInt64] {
    table.withLock { table in
      var next: [UInt64: Seen] = [:]
      next.reserveCapacity(points.count)
      var result: [UInt64: UInt64] = [:]
      for point in points {
        var seen = table[point.task] ?? Seen(function: point.function, context: point.context, since: now)
        if seen.function != point.function || seen.context != point.context {
          seen = Seen(function: point.function, context: point.context, since: now)
        }
        next[point.task] = seen
        result[point.task] = seen.since
      }
      table = next
      return result
    }
  }

  /// Starts the once-a-second pass (once).
  static func start() {
    guard startedAt.compareExchange(expected: 0, desired: ProfilingSession.clock(CLOCK_MONOTONIC), ordering: .relaxed).exchanged
    else { return }
    let thread = ProfilerThread(name: "ap-task-watch") {
      var deadline = ProfilingSession.clock(CLOCK_MONOTONIC)
      while true {
        // To a deadline: a profile's signals interrupt a plain sleep, which
        // made this pass run at the sampling rate instead of once a second.
        deadline += 1_000_000_000
        var until = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
        while clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, nil) == EINTR {}
        deadline = max(deadline, ProfilingSession.clock(CLOCK_MONOTONIC))
        var buffer = [cap_task_entry](repeating: cap_task_entry(), count: 1024)
        var live = buffer.withUnsafeMutableBufferPointer { cap_task_registry_copy($0.baseAddress, UInt64($0.count)) }
        if live > UInt64(buffer.count) {
          buffer = [cap_task_entry](repeating: cap_task_entry(), count: Int(live) * 2)
          live = buffer.withUnsafeMutableBufferPointer { cap_task_registry_copy($0.baseAddress, UInt64($0.count)) }
          if live > UInt64(buffer.count) { continue }
        }
        // Read and recorded under the table's lock: a dump's observation
        // in between would otherwise be overwritten with older points.
        // Async-let children are seen by dumps only.
        table.withLock { table in
          var points: [(task: UInt64, function: UInt64, context: UInt64)] = []
          let tasks = buffer.prefix(Int(live)).map(\.task)
          // The resume points of all tasks, 512 per system call.
          let read = TaskMemory.regions(tasks.map { $0 &+ UInt64(TaskLayout.resumeFunction) }, count: 16)
          points.reserveCapacity(tasks.count)
          for (index, task) in tasks.enumerated() where read.ok[index] != 0 {
            points.append((task, read.bytes.word(at: index * 16), read.bytes.word(at: index * 16 + 8)))
          }
          let now = ProfilingSession.clock(CLOCK_MONOTONIC)
          for point in points {
            if let seen = table[point.task], seen.function == point.function, seen.context == point.context { continue }
            table[point.task] = Seen(function: point.function, context: point.context, since: now)
          }
          if table.count > points.count * 2 + 1024 {
            let alive = Set(points.map(\.task))
            table = table.filter { alive.contains($0.key) }
          }
        }
      }
    }
    _ = thread
  }
}
