import CAppProfiler
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A label set as the signal handler finds it: bound to a task-local, so
/// that child tasks (async let, task groups, `Task {}`) inherit it. The
/// handler reads `id`, the first stored property (byte 16, after the
/// object header), from the task's task-local chain; the labels themselves
/// are looked up by id when samples are drained (``LabelRegistry``).
final class LabelSetBox: Sendable {
  let id: UInt64
  let labels: [String: String]

  init(id: UInt64, labels: [String: String]) {
    self.id = id
    self.labels = labels
  }
}

/// Interned label sets: one id per distinct set, alive for the process (a
/// sample may be drained after the task that took it ended). Bounded:
/// beyond ``capacity`` distinct sets, new ones are not recorded (their
/// samples carry no labels) and `dropped` counts them — labels are for
/// bounded values (routes, methods), not ids of every request.
final class LabelRegistry: Sendable {
  static let shared = LabelRegistry()
  static let capacity = 65_536

  private struct State {
    var ids: [[String: String]: UInt64] = [:]
    var sets: [[String: String]] = [[:]]  // id 0: none
    var dropped = 0
  }
  private let state = Mutex(State())

  /// The id of `labels` (0 for an empty set, or when the registry is full).
  func id(for labels: [String: String]) -> UInt64 {
    if labels.isEmpty { return 0 }
    return state.withLock { state in
      if let id = state.ids[labels] { return id }
      guard state.sets.count <= Self.capacity else {
        state.dropped += 1
        return 0
      }
      let id = UInt64(state.sets.count)
      state.sets.append(labels)
      state.ids[labels] = id
      return id
    }
  }

  func labels(for id: UInt64) -> [String: String] {
    guard id != 0 else { return [:] }
    return state.withLock { state in id < state.sets.count ? state.sets[Int(id)] : [:] }
  }

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
    let box = makeBox(merging: labels)
    return try await TaskLabels.$current.withValue(
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

  /// Labels for every sample of the calling thread taken while no task
  /// label applies (a thread of its own, an event loop); nil removes them.
  public static func setThreadLabels(_ labels: [String: String]?) {
    cap_thread_labels_set(LabelRegistry.shared.id(for: labels ?? [:]))
  }

  /// The labels in effect here (the task's, merged over enclosing scopes).
  public static var currentLabels: [String: String] {
    TaskLabels.current?.labels ?? LabelRegistry.shared.labels(for: cap_thread_labels_get())
  }

  private static func makeBox(merging labels: [String: String]) -> LabelSetBox {
    var merged = currentLabels
    for (key, value) in labels { merged[key] = value }
    return LabelSetBox(id: LabelRegistry.shared.id(for: merged), labels: merged)
  }
}
