import AppProfilerFormats
import CAppProfiler

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

extension Profile.Mode {
  /// Every live Swift task, one sample each, its stack the await chain.
  public static let tasks = Profile.Mode(rawValue: "tasks")
}

extension Profiler {
  /// Starts what the task dump needs in the background (the layout
  /// calibration, which runs one probe task on the cooperative pool). Call
  /// it at start, while the app is healthy; the profile server does.
  public func prepareTaskDump() {
    TaskRuntime.prepare()
  }

  /// Every live Swift task: one sample per task (`tasks`/`count`), its stack
  /// the task's await chain (where it resumes, then its async callers),
  /// labels `state`, `waiting_on`, `task_id`, `parent_id` and the task's own
  /// labels, numeric labels `suspended_seconds` (at this await, counted from
  /// the first dump) and `age_seconds`. Runs on the calling thread, without
  /// Swift concurrency: it works while every pool thread is blocked.
  /// - Parameter suspendedFor: keep only tasks suspended at least this long.
  /// - Throws: ``ProfilerError/unsupported(_:)`` when this runtime's task
  ///   layout is unknown or calibration failed (the reason says which).
  public func taskDumpSynchronously(suspendedFor: Duration? = nil) throws -> Profile {
    let layout: TaskLayout
    switch TaskRuntime.waitForCalibration() {
    case .supported(let known): layout = known
    case .unsupported(let reason): throw ProfilerError.unsupported("task dump: \(reason)")
    case .pending: throw ProfilerError.unsupported("task dump: the layout calibration has not finished; ask again")
    }
    let startRealtime = ProfilingSession.clock(CLOCK_REALTIME)
    let start = ProfilingSession.clock(CLOCK_MONOTONIC)
    TaskWatch.start()
    var (entries, registry, unreadable, completed) = TaskDump.collect(layout: layout)
    let now = ProfilingSession.clock(CLOCK_MONOTONIC)
    let since = TaskWatch.observe(
      entries.filter { $0.state != "running" }.map { ($0.address, $0.resumePoint.function, $0.resumePoint.context) },
      now: now)
    for index in entries.indices {
      if let at = since[entries[index].address] { entries[index].suspendedNanoseconds = now &- at }
    }

    var profile = Profile(
      mode: .tasks, engine: "task-registry", sampleTypes: [.init("tasks", "count")], defaultSampleType: 0,
      periodType: .init("tasks", "count"), period: 1, startTimeNanoseconds: startRealtime, durationNanoseconds: now &- start)
    // Synthetic frames: a running task's stack is its thread's.
    let runningFrame: UInt64 = 1
    let brokenFrame: UInt64 = 2
    let syntheticNames: [UInt64: String] = [
      runningFrame: "[running on a thread: see /debug/pprof/threads]", brokenFrame: "[await chain unreadable]",
    ]
    // Running tasks: their thread's stack now, with async callers (one
    // wall tick of every thread; skipped when a dump is already running).
    var threadStacks: [UInt64: (stack: [UInt64], thread: String)] = [:]
    if entries.contains(where: { $0.state == "running" }), let threads = try? threadSnapshotSynchronously() {
      for thread in threads.threads {
        for sample in thread.samples {
          guard let task = sample.numericLabels["task"] else { continue }
          let addresses = threads.stacks[sample.stack].map { threads.locations[$0].address }.filter { $0 >= 4096 }
          threadStacks[UInt64(bitPattern: task)] = (addresses, thread.name)
        }
      }
    }
    func stack(of entry: TaskDump.Entry) -> [UInt64] {
      if entry.state == "running" {
        if let onThread = threadStacks[entry.address], !onThread.stack.isEmpty { return onThread.stack }
        return [runningFrame]
      }
      var frames = entry.frames
      if entry.chainBroken || frames.isEmpty { frames.append(brokenFrame) }
      return frames
    }
    var addresses: [UInt64] = []
    var seen = Set<UInt64>()
    for entry in entries {
      for address in stack(of: entry) where seen.insert(address).inserted { addresses.append(address) }
    }
    let located = ProfileBuilder.addLocations(
      addresses, to: &profile, symbolizer: .shared, budget: .seconds(2), sourceLocations: true, hasTypes: false,
      syntheticName: { syntheticNames[$0] ?? "[unknown]" })
    var stackIndex: [[Int]: Int] = [:]
    var samples: [Profile.Sample] = []
    let minimum: UInt64? = suspendedFor.map { duration in
      duration <= .zero
        ? 0 : UInt64(clamping: duration.components.seconds) &* 1_000_000_000
          &+ UInt64(clamping: duration.components.attoseconds / 1_000_000_000)
    }
    for var entry in entries {
      let locations = stack(of: entry).map { located.index[$0]! }
      // Task.sleep waits on a continuation of its own: name it.
      if entry.waitingOn == "continuation" || entry.waitingOn == "unknown",
        let leaf = locations.first.flatMap({ profile.locations[$0].lines.last }),
        Self.isSleep(profile.functions[leaf.function].name)
      {
        entry.waitingOn = "sleep"
      }
      if let minimum, entry.state == "running" || entry.suspendedNanoseconds < minimum { continue }
      let index: Int
      if let existing = stackIndex[locations] {
        index = existing
      } else {
        index = profile.stacks.count
        profile.stacks.append(locations)
        stackIndex[locations] = index
      }
      var labels = entry.labels
      labels["state"] = entry.state
      labels["waiting_on"] = entry.waitingOn
      labels["task_id"] = String(entry.id)
      if entry.parent != 0 { labels["parent_id"] = String(entry.parent) }
      if let thread = threadStacks[entry.address]?.thread { labels["thread"] = thread }
      var numeric: [String: Int64] = ["suspended_seconds": Int64(clamping: entry.suspendedNanoseconds / 1_000_000_000)]
      if let created = entry.createdNanoseconds { numeric["age_seconds"] = Int64(clamping: (now &- created) / 1_000_000_000) }
      samples.append(.init(stack: index, timestampNanoseconds: 0, values: [1], labels: labels, numericLabels: numeric))
    }
    profile.threads = [Profile.ThreadSamples(id: 0, name: "tasks", samples: samples)]
    profile.statistics.samplesRecorded = Int64(samples.count)
    profile.metadata["tasks_live"] = String(entries.count)
    profile.metadata["tasks_listed"] = String(samples.count)
    profile.metadata["tasks_unrecorded"] = String(registry.unrecorded)
    profile.metadata["tasks_unreadable"] = String(unreadable)
    profile.metadata["tasks_completed_held"] = String(completed)
    profile.metadata["tasks_created_since_start"] = String(registry.seen)
    profile.metadata["task_registry_bytes"] = String(registry.table_bytes)
    profile.metadata["suspension_clock_seconds"] = String((now &- TaskWatch.clockStart) / 1_000_000_000)
    if registry.unrecorded > 0 {
      profile.metadata["tasks_note"] = "\(registry.unrecorded) tasks were created while the registry could not grow: they are missing"
    }
    if located.sourcePending > 0 { profile.metadata["source_locations_pending"] = String(located.sourcePending) }
    profile.metadata["executable"] = ImageMap.executablePath()
    profile.metadata["pid"] = String(getpid())
    profile.metadata["library_version"] = AppProfilerVersion.current
    return profile
  }

  /// What the task dump would answer on a runtime exporting this layout
  /// version and task size: nil when supported, else the reason. For tests.
  @_spi(Testing) public func taskLayoutCheck(runtimeVersion: UInt32, taskSize: Int) -> String? {
    if case .unsupported(let reason) = TaskRuntime.gate(runtime: (runtimeVersion, taskSize)) { return reason }
    return nil
  }

  /// Runs `operation`, in which the calling task only waits for work it
  /// handed to another task of the same request (a framework bridging to a
  /// task of its own): task-scoped wall profiles leave this task's wait out,
  /// since the other task's time is in them. Framework integrations use it.
  public static func withDelegatedWait<R>(
    isolation: isolated (any Actor)? = #isolation, operation: () async throws -> R
  ) async rethrows -> R {
    let wait = DelegatedWait.begin()
    defer { wait.end() }
    return try await operation()
  }

  /// ``withDelegatedWait(isolation:operation:)`` as a begin/end pair, for
  /// code that cannot wrap its wait in a closure.
  public struct DelegatedWait: Sendable {
    private let task: UInt64?

    /// Marks the calling task's coming wait; call ``end()`` after it.
    public static func begin() -> DelegatedWait {
      guard TaskWall.shared.isActive, let task = AsyncRuntime.currentTask() else { return DelegatedWait(task: nil) }
      TaskWall.shared.delegate(task, 1)
      return DelegatedWait(task: task)
    }

    public func end() {
      if let task { TaskWall.shared.delegate(task, -1) }
    }
  }

  /// Task wall passes so far and their mean cost (nanoseconds).
  @_spi(Benchmarks) public func taskWallPassCost() -> (passes: UInt64, meanNanoseconds: Double) {
    TaskWall.shared.passCost
  }

  static func isSleep(_ name: String) -> Bool {
    name.contains("Task") && (name.contains("sleep(") || name.contains("sleep<"))
  }

  /// State of the task registry: on, off, or unsupported with the reason.
  public var taskRegistryDescription: String {
    var info = cap_task_registry_info()
    cap_task_registry_status(&info)
    let reason = withUnsafeBytes(of: info.reason) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    switch Int(info.state) {
    case Int(CAP_TASKS_ON.rawValue): return "on: \(info.live) live tasks, \(info.seen) created, \(info.table_bytes) bytes"
    case Int(CAP_TASKS_OFF.rawValue): return "off: \(reason)"
    default: return "unsupported: \(reason)"
    }
  }
}
