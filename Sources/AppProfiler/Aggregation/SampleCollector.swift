import CAppProfiler

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Off the signal path: turns drained raw records into deduplicated stacks
/// and per-thread sample lists.
///
/// Records are read by ``SampleRecords`` (a `cap_sample_header`, then
/// `depth` frames, leaf first).
///
/// Allocation records (`CAP_SAMPLE_ALLOCATION`): weight is the allocation's
/// size, every frame is a return address, and a Swift object's type
/// metadata becomes a leaf frame of its own (``typeFrame(_:)``). Each record
/// also carries the estimated objects and bytes it stands for: an allocation
/// of s bytes is sampled with probability p = 1 − e^(−s / rate), so it
/// counts as 1/p objects and s/p bytes (Go's scaling, per sample). Its
/// `heap_id` names it in the live-heap set (heap_set.c): ``applyLive(_:)``
/// marks the samples still alive as in use, with the same estimates.
///
/// Lock records (`CAP_SAMPLE_LOCK_WAIT`, `CAP_SAMPLE_LOCK_HOLD`): weight is
/// the delay in ns, every frame a return address. A delay d was recorded
/// with probability p = min(1, d / rate), so it counts as 1/p contentions
/// and d/p ns (Go's block profile scaling), kept in `objects` and `bytes`.
/// A collector keeps the kind it was made for (``lockKind``) and skips the
/// other.
///
/// Caller frames are stored as return address − 1, so they fall inside the
/// call instruction (the line of the call, not of the next statement).
/// Async resume points (a task's callers) arrive as entry + 1 and so land on
/// the entry. Synthetic frames use addresses below 4096, where no code is
/// ever mapped, and are kept as they are.
struct SampleCollector: Sendable {
  /// Addresses standing for synthetic frames.
  enum Synthetic: UInt64, CaseIterable {
    case truncated = 1
    case stackUnavailable = 2
    case droppedSamples = 3
    case unknownStack = 4
    case signalBlocked = 5
    /// Between a task's async callers and the executor running it (C: CAP_FRAME_ASYNC).
    case async = 6
    /// Where a task's context chain could not be followed (CAP_FRAME_ASYNC_BROKEN).
    case asyncBroken = 7
    /// Task wall profiles: a task of the scope waiting, not on a thread (TaskWall).
    case suspendedContinuation = 8
    case suspendedTask = 9
    case suspendedGroup = 10
    case suspendedSleep = 11
    case suspendedActor = 12
    case suspendedOther = 13
    case enqueued = 14

    var name: String {
      switch self {
      case .suspendedContinuation: return "[suspended: continuation]"
      case .suspendedTask: return "[suspended: task]"
      case .suspendedGroup: return "[suspended: group]"
      case .suspendedSleep: return "[suspended: sleep]"
      case .suspendedActor: return "[suspended: actor]"
      case .suspendedOther: return "[suspended]"
      case .enqueued: return "[enqueued]"
      case .truncated: return "[truncated]"
      case .stackUnavailable: return "[stack unavailable]"
      case .droppedSamples: return "[dropped samples]"
      case .unknownStack: return "[unknown stack: signal not delivered]"
      case .signalBlocked: return "[signal blocked]"
      case .async: return "[async]"
      case .asyncBroken: return "[async chain unreadable]"
      }
    }
  }

  /// Synthetic addresses from here up to 4095 name kernel states
  /// (``kernelStates``) of threads that block the sampling signal.
  static let kernelStateBase: UInt64 = 1024

  /// What the kernel said a thread was doing, for threads the signal could
  /// not reach (`[kernel: futex]`), indexed from ``kernelStateBase``.
  private(set) var kernelStates: [String] = []
  private var kernelStateIDs: [String: UInt64] = [:]

  /// The name of a synthetic address (below 4096).
  func syntheticName(_ address: UInt64) -> String {
    if let synthetic = Synthetic(rawValue: address) { return synthetic.name }
    let index = Int(address) - Int(Self.kernelStateBase)
    if index >= 0 && index < kernelStates.count { return kernelStates[index] }
    return "[synthetic]"
  }

  /// The stack of a thread whose signal was never handled because it blocks
  /// the signal: its kernel state (read now, off the signal path) under
  /// `[signal blocked]`.
  private mutating func signalBlockedStack(_ tid: Int32) -> Int32 {
    let state = KernelThreadState.read(tid).frameName
    var address = kernelStateIDs[state]
    if address == nil, Int(Self.kernelStateBase) + kernelStates.count < 4096 {
      address = Self.kernelStateBase + UInt64(kernelStates.count)
      kernelStates.append(state)
      kernelStateIDs[state] = address
    }
    return stackID([address, Synthetic.signalBlocked.rawValue].compactMap { $0 })
  }

  struct RawSample: Sendable {
    var timestamp: UInt64
    var count: UInt64
    /// Index into `stacks`, or -1 for a repeat of the thread's previous stack.
    var stack: Int32
    var flags: UInt16
    /// Allocation records: estimated objects and bytes (see above).
    var objects: Double = 0
    var bytes: Double = 0
    /// Allocation records: the part of `objects`/`bytes` still alive
    /// (``applyLive(_:)``), and the sample's id in the live-heap set.
    var liveObjects: Double = 0
    var liveBytes: Double = 0
    var heapID: UInt64 = 0
    /// The Swift task that was running (AsyncTask address), 0 for none.
    var task: UInt64 = 0
    /// Its label set: an index into ``labelSets`` (0 for none), with the
    /// scope of a task-scoped session in the high half (``LabelScope``).
    var labels: UInt64 = 0
  }

  /// Type frames: the metadata address with the top bit set (no code or
  /// data address of a user-space process has it).
  static let typeFrameTag: UInt64 = 1 << 63

  static func typeFrame(_ metadata: UInt64) -> UInt64 { metadata | typeFrameTag }

  static func isTypeFrame(_ address: UInt64) -> Bool { address & typeFrameTag != 0 }

  /// Mean bytes between allocation samples; used to scale allocation records.
  var allocationRate: Double = 0
  /// Lock records: which kind this collector keeps (`CAP_SAMPLE_LOCK_WAIT`
  /// or `CAP_SAMPLE_LOCK_HOLD`), and the sampler's rate in ns.
  var lockKind: UInt16 = 0
  var lockRate: Double = 0
  /// Keep one running total per stack (thread `aggregateThread`) instead of
  /// every sample: the cumulative allocation profile, whose size must not
  /// grow with time.
  private(set) var aggregateThread: Int32? = nil
  /// Running totals are kept per stack and label set.
  private struct AggregateKey: Hashable {
    var stack: Int32
    var labels: UInt64
  }
  private var aggregateIndex: [AggregateKey: Int] = [:]
  /// Running totals: the tracked allocations not seen freed yet, by heap id
  /// (bounded by the live-heap set's bound; see ``pruneLive(keeping:before:)``).
  private struct LiveRecord {
    var key: AggregateKey
    var objects: Double
    var bytes: Double
  }
  private var liveRecords: [UInt64: LiveRecord] = [:]
  /// Per thread, samples dropped from the front by ``trim(keeping:)``:
  /// marks count from the first sample ever collected.
  private var trimmed: [Int32: Int] = [:]

  init(
    allocationRate: Double = 0, lockKind: UInt16 = 0, lockRate: Double = 0, aggregateThread: Int32? = nil,
    aggregateName: String = ""
  ) {
    self.allocationRate = allocationRate
    self.lockKind = lockKind
    self.lockRate = lockRate
    self.aggregateThread = aggregateThread
    if let aggregateThread {
      threadNames[aggregateThread] = aggregateName
      samples[aggregateThread] = []
    }
  }

  /// Label sets of this collector's samples, copied from the registry when
  /// drained (a registry id is reused once its sets are gone): a sample's
  /// `labels` is an index here, with the registry id's scope half kept.
  private(set) var labelSets: [[String: String]] = [[:]]
  private var labelSetIDs: [[String: String]: UInt64] = [:]

  /// Labels that make every request's set its own: left out of running
  /// totals, which must stay bounded.
  static let perRequestLabelKeys: Set<String> = ["trace_id", "span_id"]

  /// The labels of a sample's `labels`.
  func labels(of id: UInt64) -> [String: String] {
    let index = Int(LabelScope.labels(of: id))
    return index < labelSets.count ? labelSets[index] : [:]
  }

  /// A registry label id as this collector's (see ``labelSets``), through
  /// a cache valid for one drain.
  private mutating func localLabels(_ raw: UInt64, _ cache: inout [UInt64: UInt64]) -> UInt64 {
    if raw == 0 { return 0 }
    if let known = cache[raw] { return known }
    var labels = LabelRegistry.shared.labels(for: raw)
    if aggregateThread != nil { for key in Self.perRequestLabelKeys { labels[key] = nil } }
    var index: UInt64 = 0
    if !labels.isEmpty {
      if let existing = labelSetIDs[labels] {
        index = existing
      } else {
        index = UInt64(labelSets.count)
        labelSets.append(labels)
        labelSetIDs[labels] = index
      }
    }
    // Running totals drop the scope too: per request, it would make them grow.
    let local = index | (aggregateThread != nil ? 0 : raw & 0xFFFF_FFFF_0000_0000)
    cache[raw] = local
    return local
  }

  private(set) var stacks: [[UInt64]] = []
  private var stackIDs: [[UInt64]: Int32] = [:]
  private(set) var samples: [Int32: [RawSample]] = [:]
  private(set) var threadNames: [Int32: String] = [:]
  /// Threads that were the profiler's when their samples were first drained.
  private(set) var profilerThreads: Set<Int32> = []
  private(set) var truncatedSamples: Int64 = 0
  private(set) var records: Int = 0

  mutating func stackID(_ frames: [UInt64]) -> Int32 {
    if let existing = stackIDs[frames] { return existing }
    let id = Int32(stacks.count)
    stacks.append(frames)
    stackIDs[frames] = id
    return id
  }

  /// The pseudo-threads of task wall samples (suspended and enqueued
  /// tasks): of task-scoped sessions' scopes, and of every task.
  static let suspendedTasksThread: Int32 = Int32.max - 1
  static let allTasksThread: Int32 = Int32.max - 2

  /// Drops a thread's samples (a pseudo-thread a session did not ask for).
  mutating func dropSamples(ofThread tid: Int32) {
    samples[tid] = nil
    threadNames[tid] = nil
  }

  /// A sample of a task of a task-scoped wall session while it is on no
  /// thread: `frames` leaf first (a marker, then its await chain),
  /// `labelID` the task's registry label id (with its scope).
  mutating func addTaskSample(
    frames: [UInt64], labelID: UInt64, count: UInt64, timestamp: UInt64, task: UInt64,
    thread tid: Int32 = Self.suspendedTasksThread
  ) {
    var cache: [UInt64: UInt64] = [:]
    let labels = localLabels(labelID, &cache)
    if threadNames[tid] == nil { threadNames[tid] = "tasks (suspended, enqueued)" }
    records += 1
    samples[tid, default: []].append(
      RawSample(timestamp: timestamp, count: count, stack: stackID(frames), flags: 0, task: task, labels: labels))
  }

  /// Parses what a drain wrote (``SampleRecords``).
  mutating func ingest(_ buffer: UnsafeRawBufferPointer) {
    var frames: [UInt64] = []
    frames.reserveCapacity(Int(CAP_MAX_DEPTH) + 1)
    var labelCache: [UInt64: UInt64] = [:]
    for record in SampleRecords(buffer) {
      let header = record.header
      let (tid, weight, flags) = (header.tid, header.weight, header.flags)
      let labels = localLabels(header.labels, &labelCache)
      records += 1
      if record.has(CAP_SAMPLE_ALLOCATION) {
        ingestEvent(record, labels: labels, frames: &frames) { [allocationRate] size in
          let probability = allocationRate > 0 ? -expm1(-size / allocationRate) : 1
          let objects = probability > 0 ? 1 / probability : 1
          return (objects, size * objects)
        }
        continue
      }
      if flags & Self.lockFlags != 0 {
        guard flags & lockKind != 0 else { continue }
        ingestEvent(record, labels: labels, frames: &frames) { [lockRate] delay in
          let probability = lockRate > 0 ? min(1, delay / lockRate) : 1
          return (1 / probability, delay / probability)
        }
        continue
      }
      if threadNames[tid] == nil { firstSeen(tid) }
      if record.has(CAP_SAMPLE_UNDELIVERED) && record.has(CAP_SAMPLE_SIGNAL_BLOCKED) {
        let stack = signalBlockedStack(tid)
        samples[tid, default: []].append(RawSample(timestamp: header.timestamp_ns, count: weight, stack: stack, flags: flags))
        continue
      }
      if record.has(CAP_SAMPLE_REPEAT) {
        samples[tid, default: []].append(RawSample(timestamp: header.timestamp_ns, count: weight, stack: -1, flags: flags))
        continue
      }
      frames.removeAll(keepingCapacity: true)
      for index in 0..<record.depth {
        // The leaf is the interrupted PC; callers are return addresses.
        let address = record.frame(index)
        frames.append(index == 0 || address < 4096 ? address : address &- 1)
      }
      if record.has(CAP_SAMPLE_TRUNCATED) {
        frames.append(Synthetic.truncated.rawValue)
        truncatedSamples += Int64(weight)
      } else if record.has(CAP_SAMPLE_NO_STACK_BOUNDS) {
        frames.append(Synthetic.stackUnavailable.rawValue)
      }
      let id = stackID(frames)
      samples[tid, default: []].append(
        RawSample(timestamp: header.timestamp_ns, count: weight, stack: id, flags: flags, task: header.task, labels: labels))
    }
  }

  static let lockFlags = UInt16(CAP_SAMPLE_LOCK_WAIT) | UInt16(CAP_SAMPLE_LOCK_HOLD)

  /// A record taken by a wrapper (allocation, lock wait): its stack of
  /// return addresses (a Swift object's type as a leaf frame of its own),
  /// and the events and amount it stands for (`estimate(weight)`).
  private mutating func ingestEvent(
    _ record: SampleRecords.Record, labels: UInt64, frames: inout [UInt64],
    estimate: (Double) -> (events: Double, amount: Double)
  ) {
    let header = record.header
    frames.removeAll(keepingCapacity: true)
    if header.object_type != 0 { frames.append(Self.typeFrame(header.object_type)) }
    for index in 0..<record.depth {
      // Return addresses, the leaf's too: step back into the call.
      let address = record.frame(index)
      frames.append(address < 4096 ? address : address &- 1)
    }
    if record.has(CAP_SAMPLE_TRUNCATED) {
      frames.append(Synthetic.truncated.rawValue)
      truncatedSamples += 1
    } else if record.has(CAP_SAMPLE_NO_STACK_BOUNDS) {
      frames.append(Synthetic.stackUnavailable.rawValue)
    }
    let id = stackID(frames)
    let (events, amount) = estimate(Double(header.weight))
    addAllocation(
      tid: header.tid, timestamp: header.timestamp_ns, stack: id, flags: header.flags, raw: 1, objects: events,
      bytes: amount, task: header.task, labels: labels, heapID: header.heap_id)
  }

  /// Sets each allocation sample's in-use part: all of it when its heap id
  /// is in `live`, none otherwise (running totals: the sum of their live
  /// records in `live`).
  mutating func applyLive(_ live: Set<UInt64>) {
    if let group = aggregateThread {
      guard var list = samples[group] else { return }
      for index in list.indices {
        list[index].liveObjects = 0
        list[index].liveBytes = 0
      }
      for (id, record) in liveRecords where live.contains(id) {
        guard let index = aggregateIndex[record.key] else { continue }
        list[index].liveObjects += record.objects
        list[index].liveBytes += record.bytes
      }
      samples[group] = list
      return
    }
    for tid in samples.keys {
      samples[tid] = samples[tid]!.map { sample in
        var sample = sample
        let alive = sample.heapID != 0 && live.contains(sample.heapID)
        sample.liveObjects = alive ? sample.objects : 0
        sample.liveBytes = alive ? sample.bytes : 0
        return sample
      }
    }
  }

  /// Running totals: forgets live records freed since (not in `live`, taken
  /// after they were drained). Records with ids from `boundary` on may have
  /// been drained before their insertion was visible: kept for next time.
  mutating func pruneLive(keeping live: Set<UInt64>, before boundary: UInt64) {
    liveRecords = liveRecords.filter { live.contains($0.key) || $0.key >= boundary }
  }

  /// Live records held by running totals.
  var liveRecordCount: Int { liveRecords.count }

  /// Adds one sampled allocation (or a total of several) to its thread, or
  /// to the running total of its stack when aggregating.
  mutating func addAllocation(
    tid: Int32, timestamp: UInt64, stack: Int32, flags: UInt16, raw: UInt64, objects: Double, bytes: Double,
    task: UInt64 = 0, labels: UInt64 = 0, heapID: UInt64 = 0
  ) {
    if let group = aggregateThread {
      let key = AggregateKey(stack: stack, labels: labels)
      if heapID != 0 { liveRecords[heapID] = LiveRecord(key: key, objects: objects, bytes: bytes) }
      if let index = aggregateIndex[key] {
        samples[group]![index].count += raw
        samples[group]![index].objects += objects
        samples[group]![index].bytes += bytes
        samples[group]![index].timestamp = timestamp
      } else {
        aggregateIndex[key] = samples[group]!.count
        samples[group]!.append(
          RawSample(
            timestamp: timestamp, count: raw, stack: stack, flags: flags, objects: objects, bytes: bytes,
            labels: labels))
      }
      return
    }
    if threadNames[tid] == nil { firstSeen(tid) }
    samples[tid, default: []].append(
      RawSample(
        timestamp: timestamp, count: raw, stack: stack, flags: flags, objects: objects, bytes: bytes, heapID: heapID,
        task: task, labels: labels))
  }

  // MARK: Consumers of a shared session

  /// Where a consumer of a shared session began reading: per thread, how
  /// many samples had been collected (counted from the first ever, trimmed
  /// or not). Consumers read per-sample collectors only, never running totals.
  struct Mark: Sendable {
    var counts: [Int32: Int] = [:]
    var truncatedSamples: Int64 = 0
    /// The sampler's counters then.
    var counters = SamplerCounters()
  }

  func mark(counters: SamplerCounters = SamplerCounters()) -> Mark {
    var mark = Mark(truncatedSamples: truncatedSamples, counters: counters)
    for (tid, list) in samples { mark.counts[tid] = (trimmed[tid] ?? 0) + list.count }
    return mark
  }

  /// What was collected after `mark`: the samples of every thread since
  /// then (a leading repeat gets the stack it repeats).
  func since(_ mark: Mark) -> SampleCollector {
    var result = self
    result.trimmed = [:]
    result.truncatedSamples = max(0, truncatedSamples - mark.truncatedSamples)
    for (tid, list) in samples {
      let start = max(0, min(list.count, (mark.counts[tid] ?? 0) - (trimmed[tid] ?? 0)))
      result.samples[tid] = Self.suffix(of: list, from: start)
    }
    return result
  }

  /// Sample records held (a running total counts as one).
  var recordCount: Int { samples.values.reduce(0) { $0 + $1.count } }

  /// Drops samples no consumer will read (those before every mark), so a
  /// session shared by overlapping consumers does not grow without end.
  mutating func trim(keeping marks: [Mark]) {
    guard aggregateThread == nil, !marks.isEmpty else { return }
    for (tid, list) in samples {
      let first = marks.map { $0.counts[tid] ?? 0 }.min() ?? 0
      let start = max(0, min(list.count, first - (trimmed[tid] ?? 0)))
      guard start > 0 else { continue }
      samples[tid] = Self.suffix(of: list, from: start)
      trimmed[tid, default: 0] += start
    }
  }

  /// `list[start...]`, its leading repeats resolved from the last full
  /// sample before `start`.
  private static func suffix(of list: [RawSample], from start: Int) -> [RawSample] {
    var tail = Array(list[start...])
    guard let previous = list[..<start].last(where: { $0.stack >= 0 }) else { return tail }
    for index in tail.indices {
      guard tail[index].stack < 0 else { break }
      tail[index].stack = previous.stack
      tail[index].task = previous.task
      tail[index].labels = previous.labels
    }
    return tail
  }

  /// Keeps only the samples whose label set passes `include` (label set
  /// ids, 0 for none); repeats are resolved first, so each keeps the labels
  /// of the sample it repeats.
  mutating func keepSamples(labelled include: (UInt64) -> Bool) {
    var resolved = resolvedSamples()
    for tid in resolved.keys {
      resolved[tid]!.removeAll { !include($0.labels) }
      if resolved[tid]!.isEmpty, tid != aggregateThread { resolved[tid] = nil }
    }
    samples = resolved
    trimmed = [:]
  }

  /// Per thread, in time order, with every repeat record replaced by the
  /// stack the thread had at that time (its previous sample; the next one
  /// when a run came before the thread's first handled signal).
  mutating func resolvedSamples() -> [Int32: [RawSample]] {
    var result: [Int32: [RawSample]] = [:]
    for (tid, list) in samples {
      var sorted = list.enumerated().sorted {
        $0.element.timestamp != $1.element.timestamp ? $0.element.timestamp < $1.element.timestamp : $0.offset < $1.offset
      }.map(\.element)
      var previous: Int32 = -1
      var previousTask: UInt64 = 0
      var previousLabels: UInt64 = 0
      var waiting: [Int] = []
      for index in sorted.indices {
        if sorted[index].stack >= 0 {
          previous = sorted[index].stack
          previousTask = sorted[index].task
          previousLabels = sorted[index].labels
          for waitingIndex in waiting {
            sorted[waitingIndex].stack = previous
            sorted[waitingIndex].task = previousTask
            sorted[waitingIndex].labels = previousLabels
          }
          waiting.removeAll()
        } else if previous >= 0 {
          sorted[index].stack = previous
          sorted[index].task = previousTask
          sorted[index].labels = previousLabels
        } else {
          waiting.append(index)
        }
      }
      if !waiting.isEmpty {
        let unknown = stackID([Synthetic.unknownStack.rawValue])
        for waitingIndex in waiting { sorted[waitingIndex].stack = unknown }
      }
      result[tid] = sorted
    }
    return result
  }

  /// A thread's first sample: its name, and whether it is the profiler's.
  private mutating func firstSeen(_ tid: Int32) {
    threadNames[tid] = Self.threadName(tid)
    if ProfilerThreads.contains(tid) { profilerThreads.insert(tid) }
  }

  /// `/proc/self/task/<tid>/comm` without its newline; "thread-<tid>" once gone.
  static func threadName(_ tid: Int32) -> String {
    let fd = open("/proc/self/task/\(tid)/comm", O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return "thread-\(tid)" }
    defer { close(fd) }
    var buffer = [UInt8](repeating: 0, count: 64)
    let count = read(fd, &buffer, buffer.count)
    guard count > 0 else { return "thread-\(tid)" }
    var name = String(decoding: buffer[0..<count], as: UTF8.self)
    while name.hasSuffix("\n") { name.removeLast() }
    return name.isEmpty ? "thread-\(tid)" : name
  }
}
