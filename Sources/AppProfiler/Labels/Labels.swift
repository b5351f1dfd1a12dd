import CAppProfiler
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A label set as the signal handler finds it: bound to a task-local, so
/// that child tasks (async let, task groups, `Task {}`) inherit it. The
/// handler reads `id`, the first stored property (byte 16, after the
/// object header), from the task's task-local chain; the labels themselves
/// are looked up by id when samples are drained (``LabelRegistry``).
///
/// The id's low 32 bits are the registry's id of the labels, held for as
/// long as the box lives; the high 32 bits the scope of a task-scoped
/// session (``LabelScope``), 0 for none — so a per-request profile finds
/// its request's samples without a label set per request.
final class LabelSetBox: Sendable {
  let id: UInt64
  let labels: [String: String]

  init(labels: [String: String], scope: UInt32) {
    self.id = LabelRegistry.shared.retain(labels) | UInt64(scope) << 32
    self.labels = labels
  }

  deinit {
    LabelRegistry.shared.release(LabelScope.labels(of: id))
  }

  var scope: UInt32 { UInt32(truncatingIfNeeded: id >> 32) }
}

/// The scope of a task-scoped session: samples of code that runs inside
/// ``Profiler/withScope(_:operation:)`` (and its child tasks) carry it in
/// the high half of their label id.
struct LabelScope: Sendable, Hashable {
  let value: UInt32

  private static let next = Atomic<UInt32>(0)

  /// A new scope (never 0; wraps after 2^32 − 1 sessions).
  static func make() -> LabelScope {
    while true {
      let value = next.add(1, ordering: .relaxed).newValue
      if value != 0 { return LabelScope(value: value) }
    }
  }

  static func of(labelID: UInt64) -> UInt32 { UInt32(truncatingIfNeeded: labelID >> 32) }
  static func labels(of labelID: UInt64) -> UInt64 { labelID & 0xFFFF_FFFF }
}

/// Interned label sets: one id per distinct set in use. A set is held by
/// the ``LabelSetBox``es that carry it (and for good by thread labels);
/// once the last box is gone its id rests for ``quarantineNanoseconds`` —
/// long enough for every sample that carries it to be drained, after which
/// samples hold the labels themselves (``SampleCollector``) — and is then
/// reused. So per-request values (`trace_id`) do not fill the registry.
/// Bounded: beyond ``capacity`` sets in use at once, new ones are not
/// recorded (their samples carry no labels) and `dropped` counts them.
final class LabelRegistry: Sendable {
  static let shared = LabelRegistry()
  static let capacity = 65_536
  static let quarantineNanoseconds: UInt64 = 2_000_000_000

  private struct Entry {
    var labels: [String: String]
    var holders: Int
  }

  private struct State {
    var ids: [[String: String]: UInt64] = [:]
    var entries: [Entry?] = [nil]  // id 0: none
    /// Released ids, oldest first, with when they were released.
    var resting: [(id: UInt64, since: UInt64)] = []
    var restingStart = 0
    var free: [UInt64] = []
    var dropped = 0
  }
  private let state = Mutex(State())
  private let quarantine: UInt64

  init(quarantineNanoseconds: UInt64 = LabelRegistry.quarantineNanoseconds) {
    self.quarantine = quarantineNanoseconds
  }

  /// The id of `labels`, held until ``release(_:)`` (0 for an empty set,
  /// or when the registry is full).
  func retain(_ labels: [String: String]) -> UInt64 {
    if labels.isEmpty { return 0 }
    return state.withLock { state in
      if let id = state.ids[labels] {
        state.entries[Int(id)]!.holders += 1
        return id
      }
      recycle(&state)
      let id: UInt64
      if let reused = state.free.popLast() {
        id = reused
      } else if state.entries.count <= Self.capacity {
        id = UInt64(state.entries.count)
        state.entries.append(nil)
      } else {
        state.dropped += 1
        return 0
      }
      state.entries[Int(id)] = Entry(labels: labels, holders: 1)
      state.ids[labels] = id
      return id
    }
  }

  /// Lets go of one hold of `id`; the last one sends it to rest.
  func release(_ id: UInt64) {
    guard id != 0 else { return }
    let now = ProfilingSession.clock(CLOCK_MONOTONIC)
    state.withLock { state in
      guard Int(id) < state.entries.count, var entry = state.entries[Int(id)] else { return }
      entry.holders -= 1
      state.entries[Int(id)] = entry
      guard entry.holders <= 0 else { return }
      // Still readable by id while it rests; no longer found by labels.
      state.ids[entry.labels] = nil
      state.resting.append((id, now))
    }
  }

  /// Ids that have rested long enough become free.
  private func recycle(_ state: inout State) {
    guard state.restingStart < state.resting.count else { return }
    let now = ProfilingSession.clock(CLOCK_MONOTONIC)
    while state.restingStart < state.resting.count, now - state.resting[state.restingStart].since >= quarantine {
      let id = state.resting[state.restingStart].id
      state.entries[Int(id)] = nil
      state.free.append(id)
      state.restingStart += 1
    }
    if state.restingStart > 1024 && state.restingStart * 2 > state.resting.count {
      state.resting.removeFirst(state.restingStart)
      state.restingStart = 0
    }
  }

  /// The labels of a registry id or of a sample's label id (its scope half
  /// ignored); empty for an id not in use.
  func labels(for id: UInt64) -> [String: String] {
    let id = LabelScope.labels(of: id)
    guard id != 0 else { return [:] }
    return state.withLock { state in id < state.entries.count ? state.entries[Int(id)]?.labels ?? [:] : [:] }
  }

  /// Label sets held or resting now.
  var count: Int { state.withLock { state in state.entries.count - 1 - state.free.count } }

  var droppedSets: Int { state.withLock { $0.dropped } }
}

/// Where the handler finds a task's labels: the task-local's key and the
/// offset of the task-local chain in a task, found once by calibration on
/// the first labelled scope that runs in a task.
enum TaskLabels {
  @TaskLocal static var current: LabelSetBox? = nil

  /// 0: not calibrated yet; -1: calibration failed (no task labels); else
  /// the chain head's offset. An atomic: every labelled scope checks it.
  private static let calibration = Atomic<Int32>(0)

  /// In a task with `box` bound: finds the chain head's offset (once).
  static func calibrateIfNeeded(box: LabelSetBox) {
    guard calibration.load(ordering: .acquiring) == 0, let task = AsyncRuntime.currentTask() else { return }
    let key = UInt64(UInt(bitPattern: Unmanaged.passUnretained($current).toOpaque()))
    let value = UInt64(UInt(bitPattern: Unmanaged.passUnretained(box).toOpaque()))
    // An AsyncTask: 64 bytes of job header, then the runtime's private
    // storage (where the chain head lives), then fragments.
    let offset = cap_task_locals_calibrate(task, key, value, 512)
    let result: Int32 = offset > 0 ? offset : -1
    // Two scopes may calibrate at once; the first result is kept.
    guard calibration.compareExchange(expected: 0, desired: result, ordering: .acquiringAndReleasing).exchanged
    else { return }
    if result > 0 { cap_labels_configure(key, UInt32(result)) }
  }

  /// The key the labels are bound to in a task's task-local chain.
  static var key: UInt64? {
    UInt64(UInt(bitPattern: Unmanaged.passUnretained($current).toOpaque()))
  }

  /// The chain head's offset in a task, once calibrated.
  static var headOffset: Int32? {
    let value = calibration.load(ordering: .acquiring)
    return value > 0 ? value : nil
  }

  static var isCalibrated: Bool { headOffset != nil }
}

extension Profiler {
  /// Runs `operation` with `labels` added to every sample taken while code
  /// of this task runs — cpu, wall and alloc — and of the child tasks it
  /// creates (async let, task groups, `Task {}`; not `Task.detached`).
  /// Nested scopes merge; an inner value replaces an outer one for its key.
  /// Like Go's `pprof.Do`. Samples show them as pprof labels
  /// (`go tool pprof -tagfocus route=/users/:id`) and in the model as
  /// ``Profile/Sample/labels``. Keep values bounded (route patterns, not
  /// raw paths). See docs/labels.md.
  public static func withLabels<R>(
    _ labels: [String: String], isolation: isolated (any Actor)? = #isolation,
    operation: () async throws -> R
  ) async rethrows -> R {
    try await bind(makeBox(merging: labels), isolation: isolation, operation: operation)
  }

  /// Binds `box` to the task-local for `operation` (calibrating once).
  private static func bind<R>(
    _ box: LabelSetBox, isolation: isolated (any Actor)?, operation: () async throws -> R
  ) async rethrows -> R {
    try await TaskLabels.$current.withValue(
      box,
      operation: {
        TaskLabels.calibrateIfNeeded(box: box)
        return try await operation()
      }, isolation: isolation)
  }

  /// The synchronous form: on a thread that runs no task, the labels apply
  /// to that thread's samples for the scope.
  public static func withLabels<R>(_ labels: [String: String], operation: () throws -> R) rethrows -> R {
    let box = makeBox(merging: labels)
    return try TaskLabels.$current.withValue(box) {
      guard AsyncRuntime.currentTask() == nil else {
        TaskLabels.calibrateIfNeeded(box: box)
        return try operation()
      }
      let previous = cap_thread_labels_get()
      cap_thread_labels_set(box.id)
      defer { cap_thread_labels_set(previous) }
      return try operation()
    }
  }

  /// The labels and the task-scoped session in effect here, to carry to
  /// code that runs on another thread outside this task (a framework's
  /// event loop): ``withLabelContext(_:operation:)`` applies them there.
  public struct LabelContext: Sendable {
    fileprivate let box: LabelSetBox?
  }

  /// The labels and session scope in effect here.
  public static var currentLabelContext: LabelContext { LabelContext(box: TaskLabels.current) }

  /// Runs `operation` synchronously with `context`'s labels — and its
  /// task-scoped session — on the samples the calling thread takes meanwhile
  /// (on a thread that runs no task: as thread labels for exactly the call).
  public static func withLabelContext<R>(_ context: LabelContext, operation: () throws -> R) rethrows -> R {
    guard let box = context.box else { return try operation() }
    return try TaskLabels.$current.withValue(box) {
      guard AsyncRuntime.currentTask() == nil else { return try operation() }
      let previous = cap_thread_labels_get()
      cap_thread_labels_set(box.id)
      defer { cap_thread_labels_set(previous) }
      return try operation()
    }
  }

  /// Runs `operation` in the scope of a task-scoped session: the samples
  /// its task and child tasks take carry `scope` (labels in effect stay).
  static func withScope<R>(
    _ scope: LabelScope, isolation: isolated (any Actor)? = #isolation, operation: () async throws -> R
  ) async rethrows -> R {
    try await bind(LabelSetBox(labels: currentLabels, scope: scope.value), isolation: isolation, operation: operation)
  }

  /// Labels for every sample of the calling thread taken while no task
  /// label applies (a thread of its own, an event loop); nil removes them.
  /// Keep the distinct sets few: each stays registered for the process.
  public static func setThreadLabels(_ labels: [String: String]?) {
    // Held for good: thread labels are few and long-lived (an event loop's).
    cap_thread_labels_set(LabelRegistry.shared.retain(labels ?? [:]))
  }

  /// The labels in effect here (the task's, merged over enclosing scopes).
  public static var currentLabels: [String: String] {
    TaskLabels.current?.labels ?? LabelRegistry.shared.labels(for: cap_thread_labels_get())
  }

  /// Merged over the labels in effect, in the scope in effect.
  private static func makeBox(merging labels: [String: String]) -> LabelSetBox {
    var merged = currentLabels
    for (key, value) in labels { merged[key] = value }
    let scope = TaskLabels.current?.scope ?? LabelScope.of(labelID: cap_thread_labels_get())
    return LabelSetBox(labels: merged, scope: scope)
  }
}
