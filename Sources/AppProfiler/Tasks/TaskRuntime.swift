import CAppProfiler
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Where a task keeps what a dump reads, on the one runtime layout this
/// library knows (the concurrency runtime's debug layout version 1: Swift
/// 6.x on 64-bit Linux; see swift/RemoteInspection/RuntimeInternals.h).
/// Used only once ``TaskRuntime/calibrate()`` has checked it against what
/// the runtime exports and a probe task it parked itself.
struct TaskLayout: Sendable {
  static let knownVersion: UInt32 = 1
  /// Job: flags (kind, priority; bit 24 child task), id's low half.
  static let jobFlags = 0x20
  static let idLow = 0x24
  /// Where the task goes on when resumed, and its async context.
  static let resumeFunction = 0x38
  static let resumeContext = 0x40
  /// ActiveTaskStatus: flags, innermost status record.
  static let statusFlags = 0x60
  static let statusRecord = 0x68
  static let idHigh = 0x90
  static let dependencyRecord = 0xA0
  /// Bytes read per task: up to and including the dependency record.
  static let headerBytes = 0xA8

  static let running: UInt32 = 0x800
  static let enqueued: UInt32 = 0x1000
  static let complete: UInt32 = 0x2000
  static let hasDependency: UInt32 = 0x4000
  static let childTask: UInt32 = 1 << 24

  /// sizeof(AsyncTask): a child task's fragment (parent, next sibling) follows it.
  let taskSize: Int
  /// Every task's isa.
  let metadata: UInt64
  /// Runtime resume functions that are no caller of the task's code.
  let adapters: Set<UInt64>
  /// Of those, where a task that has not run yet resumes (its entry).
  let entryAdapters: Set<UInt64>
  /// The status record kind that lists async-let children (calibrated).
  var childRecordKind: UInt64
}

/// The task dump's state on this runtime: known by calibration, or
/// unsupported with the reason.
enum TaskRuntime {
  enum Support: Sendable {
    case supported(TaskLayout)
    case unsupported(String)
    case pending
  }

  private static let state = Mutex<Support>(.pending)
  private static let started = Atomic<Bool>(false)

  /// The calibration probe's tasks: left out of dumps (they wait for a
  /// pool thread to finish when the pool is blocked after the check).
  static var probeTasks: Set<UInt64> { probe.withLock { $0?.tasks ?? [] } }
  private static let probe = Mutex<TaskProbe?>(nil)

  /// What the dump can do now.
  static var support: Support { state.withLock { $0 } }

  /// Starts the calibration in the background, once: a probe task (and its
  /// async-let child) parked where this code knows they wait, read as the
  /// dump would read them, then resumed. Needs the cooperative pool once —
  /// the profile server calls it at start, while the app is healthy.
  static func prepare() {
    guard started.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged else {
      return
    }
    state.withLock { $0 = .pending }
    let result = gate()
    if case .unsupported = result {
      state.withLock { $0 = result }
      return
    }
    let probe = TaskProbe()
    Self.probe.withLock { $0 = probe }
    Task.detached { await probe.parent() }
    // A thread of its own: the pool may be busy with the app.
    let thread = ProfilerThread(name: "ap-task-probe") {
      let outcome = probe.check(gated: result)
      state.withLock { $0 = outcome }
      // A pool too busy to run the probe now may not be later: the next
      // dump calibrates again (the probe, released, ends when it runs).
      if probe.timedOut { started.store(false, ordering: .releasing) }
    }
    if !thread.isRunning {
      probe.release()
      state.withLock { $0 = .unsupported("calibration: no thread for the probe") }
      started.store(false, ordering: .releasing)
    }
  }

  /// Waits up to `timeout` for the calibration started by ``prepare()``.
  static func waitForCalibration(timeout: Duration = .seconds(2)) -> Support {
    prepare()
    let deadline = ContinuousClock.now + timeout
    while true {
      let current = support
      if case .pending = current, ContinuousClock.now < deadline {
        usleep(5_000)
        continue
      }
      return current
    }
  }

  /// Version gate: the registry runs and the runtime says its layout is the known one.
  /// `runtime` replaces what the runtime exports (tests: a runtime this
  /// library does not know).
  static func gate(runtime: (version: UInt32, taskSize: Int)? = nil) -> Support {
    var info = cap_task_registry_info()
    cap_task_registry_status(&info)
    guard info.state == Int32(CAP_TASKS_ON.rawValue) else {
      return .unsupported(withUnsafeBytes(of: info.reason) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) })
    }
    guard let versionSymbol = dlsym(nil, "_swift_concurrency_debug_internal_layout_version"),
      let sizeSymbol = dlsym(nil, "_swift_concurrency_debug_asyncTaskSize"),
      let metadataSymbol = dlsym(nil, "_swift_concurrency_debug_asyncTaskMetadata")
    else {
      return .unsupported("the concurrency runtime exports no debug layout description")
    }
    let version = runtime?.version ?? versionSymbol.load(as: UInt32.self)
    guard version == TaskLayout.knownVersion else {
      return .unsupported("unknown task layout version \(version) (known: \(TaskLayout.knownVersion))")
    }
    let size = runtime?.taskSize ?? Int(sizeSymbol.load(as: UInt.self))
    guard size >= TaskLayout.headerBytes, size <= 4096 else {
      return .unsupported("unexpected task size \(size)")
    }
    func addresses(_ names: [String]) -> Set<UInt64> {
      Set(names.compactMap { dlsym(nil, $0).map { UInt64($0.load(as: UInt.self)) } })
    }
    let entryAdapters = addresses([
      "_swift_concurrency_debug_non_future_adapter", "_swift_concurrency_debug_future_adapter",
    ])
    let adapters = entryAdapters.union(addresses([
      "_swift_concurrency_debug_task_wait_throwing_resume_adapter",
      "_swift_concurrency_debug_task_future_wait_resume_adapter",
    ]))
    let metadata = UInt64(metadataSymbol.load(as: UInt.self))
    return .supported(
      TaskLayout(taskSize: size, metadata: metadata, adapters: adapters, entryAdapters: entryAdapters, childRecordKind: 0))
  }

  typealias GetJobTaskID = @convention(c) (UnsafeRawPointer) -> UInt64
  /// swift_task_getJobTaskId: the runtime's own reading of a task's id.
  static let getJobTaskID: GetJobTaskID? = dlsym(nil, "swift_task_getJobTaskId").map {
    unsafeBitCast($0, to: GetJobTaskID.self)
  }
}

/// Reads of task memory that may be freed meanwhile (``cap_read_memory``).
struct TaskMemory {
  static func word(_ address: UInt64) -> UInt64? {
    var value: UInt64 = 0
    return cap_read_memory(address, &value, 8) == 1 ? value : nil
  }

  static func bytes(_ address: UInt64, count: Int) -> [UInt8]? {
    var buffer = [UInt8](repeating: 0, count: count)
    let ok = buffer.withUnsafeMutableBytes { cap_read_memory(address, $0.baseAddress, UInt64(count)) }
    return ok == 1 ? buffer : nil
  }

  /// `count` bytes at each address, in few system calls: region i is
  /// `bytes[i * count ..< (i + 1) * count]` when `ok[i]` is nonzero.
  static func regions(_ addresses: [UInt64], count: Int) -> (bytes: [UInt8], ok: [UInt8]) {
    var bytes = [UInt8](repeating: 0, count: addresses.count * count)
    var ok = [UInt8](repeating: 0, count: addresses.count)
    guard !addresses.isEmpty, count > 0 else { return (bytes, ok) }
    addresses.withUnsafeBufferPointer { addresses in
      bytes.withUnsafeMutableBytes { buffer in
        ok.withUnsafeMutableBufferPointer { ok in
          _ = cap_read_memory_many(
            addresses.baseAddress, UInt64(addresses.count), UInt64(count), buffer.baseAddress, ok.baseAddress)
        }
      }
    }
    return (bytes, ok)
  }
}

extension [UInt8] {
  func word(at offset: Int) -> UInt64 { withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: UInt64.self) } }
  func word32(at offset: Int) -> UInt32 { withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: UInt32.self) } }
}

/// The calibration probe: a detached task whose async-let child parks in a
/// continuation. ``check(gated:)`` reads both as a dump would and compares
/// with what the runtime says (ids, states, the child record, the chain).
final class TaskProbe: Sendable {
  private struct State {
    var parentTask: UInt64 = 0
    var childTask: UInt64 = 0
    var continuation: CheckedContinuation<Void, Never>? = nil
    var released = false
    var timedOut = false
    var finished = false
  }
  private let state = Mutex(State())

  /// The probe's tasks while they live: once the probe has finished, their
  /// addresses belong to whatever tasks malloc gives them to next.
  var tasks: Set<UInt64> { state.withLock { $0.finished ? [] : [$0.parentTask, $0.childTask] } }

  func parent() async {
    state.withLock { $0.parentTask = AsyncRuntime.currentTask() ?? 0 }
    async let waited: Void = child()
    await waited
    state.withLock { $0.finished = true }
  }

  func child() async {
    state.withLock { $0.childTask = AsyncRuntime.currentTask() ?? 0 }
    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
      let resumeNow = state.withLock { state -> Bool in
        if state.released { return true }
        state.continuation = continuation
        return false
      }
      if resumeNow { continuation.resume() }
    }
  }

  /// The probe did not park in time (the pool was busy).
  var timedOut: Bool { state.withLock { $0.timedOut } }

  func release() {
    let continuation = state.withLock { state -> CheckedContinuation<Void, Never>? in
      state.released = true
      defer { state.continuation = nil }
      return state.continuation
    }
    continuation?.resume()
  }

  /// Waits (≤ 2 s) for both tasks to be parked, checks the layout against
  /// them, and lets them finish.
  func check(gated: TaskRuntime.Support) -> TaskRuntime.Support {
    defer { release() }
    guard case .supported(let layout) = gated else { return gated }
    let deadline = ContinuousClock.now + .seconds(2)
    var parked: (parent: [UInt8], child: [UInt8], parentTask: UInt64, childTask: UInt64)? = nil
    while parked == nil && ContinuousClock.now < deadline {
      let (parentTask, childTask, waiting) = state.withLock { ($0.parentTask, $0.childTask, $0.continuation != nil) }
      if waiting, parentTask != 0, childTask != 0,
        let parent = TaskMemory.bytes(parentTask, count: TaskLayout.headerBytes),
        let child = TaskMemory.bytes(childTask, count: layout.taskSize + 16),
        parent.word32(at: TaskLayout.statusFlags) & (TaskLayout.running | TaskLayout.enqueued) == 0,
        child.word32(at: TaskLayout.statusFlags) & (TaskLayout.running | TaskLayout.enqueued) == 0
      {
        parked = (parent, child, parentTask, childTask)
      } else {
        usleep(2_000)
      }
    }
    guard let parked else {
      state.withLock { $0.timedOut = true }
      return .unsupported(
        "calibration: the probe task did not run within 2 s (the cooperative pool is busy); the next task dump tries again")
    }
    func fail(_ what: String) -> TaskRuntime.Support { .unsupported("calibration: \(what) (task layout not as expected)") }
    guard parked.parent.word(at: 0) == layout.metadata, parked.child.word(at: 0) == layout.metadata else {
      return fail("a task's isa is not the runtime's task metadata")
    }
    if let getID = TaskRuntime.getJobTaskID {
      for (bytes, task) in [(parked.parent, parked.parentTask), (parked.child, parked.childTask)] {
        let id = UInt64(bytes.word32(at: TaskLayout.idHigh)) << 32 | UInt64(bytes.word32(at: TaskLayout.idLow))
        guard let pointer = UnsafeRawPointer(bitPattern: UInt(task)), getID(pointer) == id else {
          return fail("the task id is not where the layout says")
        }
      }
    }
    guard parked.child.word32(at: TaskLayout.jobFlags) & TaskLayout.childTask != 0,
      parked.parent.word32(at: TaskLayout.jobFlags) & TaskLayout.childTask == 0,
      parked.child.word(at: layout.taskSize) == parked.parentTask
    else {
      return fail("the async-let child's fragment does not name its parent")
    }
    // Waiting: the child on its continuation, the parent on the child.
    guard parked.child.word32(at: TaskLayout.statusFlags) & TaskLayout.hasDependency != 0,
      let childDependency = TaskMemory.word(parked.child.word(at: TaskLayout.dependencyRecord) &+ 32),
      UInt32(truncatingIfNeeded: childDependency) == TaskDump.WaitingOn.continuationKind
    else {
      return fail("the child's dependency record does not say continuation")
    }
    // The parent's status records list the child.
    var record = parked.parent.word(at: TaskLayout.statusRecord)
    var kind: UInt64? = nil
    for _ in 0..<32 where record != 0 {
      guard let flags = TaskMemory.word(record), let next = TaskMemory.word(record &+ 8),
        let first = TaskMemory.word(record &+ 16)
      else { break }
      if first == parked.childTask {
        kind = flags & 0xFF
        break
      }
      record = next
    }
    guard let kind else { return fail("the parent's status records do not list its async-let child") }
    // The chains resume in this probe's functions.
    var calibrated = layout
    calibrated.childRecordKind = kind
    let childChain = TaskDump.chain(of: parked.child, layout: calibrated)
    let parentChain = TaskDump.chain(of: parked.parent, layout: calibrated)
    let names = Symbolizer.shared.resolve(childChain + parentChain, in: ImageMap.current(), sourceLocations: false)
      .map { $0.functions.last?.name ?? "" }
    // The child's chain: the continuation's frames, then TaskProbe.child.
    guard names.prefix(childChain.count).contains(where: { $0.contains("TaskProbe.child") }),
      names.dropFirst(childChain.count).first?.contains("TaskProbe.parent") == true
    else {
      return fail("the resume functions are not the probe's (\(names.prefix(3).joined(separator: ", ")))")
    }
    return .supported(calibrated)
  }
}
