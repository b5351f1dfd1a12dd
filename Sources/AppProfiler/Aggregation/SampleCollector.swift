import CAppProfiler

/// Off the signal path: turns drained records into deduplicated stacks and
/// per-thread samples, from the pieces that each do one job:
///
/// - ``RecordDecoder`` reads a record (kind, frames, estimates);
/// - ``StackTable`` deduplicates stacks;
/// - ``SampleLog`` keeps samples per thread, with marks, trimming and the
///   one place repeats are resolved;
/// - ``RunningTotals`` replaces the log for the cumulative allocation and
///   lock profiles, whose size must not grow with time;
/// - ``LabelSetTable`` holds the label sets samples name;
/// - ``KernelStateFrames`` names the states of threads that block the signal.
///
/// Allocation records are scaled by the sampling rate
/// (``RecordDecoder/allocationEstimate(size:rate:)``) and marked in use
/// from the live-heap set (``applyLive(_:)``); lock records are scaled by
/// their delay (``RecordDecoder/lockEstimate(delay:rate:)``), and a
/// collector keeps only the lock kind it was made for (``lockKind``).
struct SampleCollector: Sendable {
  /// Mean bytes between allocation samples; used to scale allocation records.
  var allocationRate: Double = 0
  /// Lock records: which kind this collector keeps (`CAP_SAMPLE_LOCK_WAIT`
  /// or `CAP_SAMPLE_LOCK_HOLD`), and the sampler's rate in ns.
  var lockKind: UInt16 = 0
  var lockRate: Double = 0

  private(set) var stackTable = StackTable()
  private(set) var log = SampleLog()
  /// Set for cumulative profiles: events are added to running totals, not logged.
  private(set) var totals: RunningTotals?
  private(set) var labelSets = LabelSetTable()
  private(set) var kernelStates = KernelStateFrames()
  private(set) var threadNames: [Int32: String] = [:]
  /// Threads that were the profiler's when their samples were first drained.
  private(set) var profilerThreads: Set<Int32> = []
  /// Samples whose stack walk was cut short (cpu and wall: their weight).
  private(set) var truncatedSamples: Int64 = 0
  /// Records ingested.
  private(set) var records: Int = 0

  init(allocationRate: Double = 0, lockKind: UInt16 = 0, lockRate: Double = 0, totals: RunningTotals? = nil) {
    self.allocationRate = allocationRate
    self.lockKind = lockKind
    self.lockRate = lockRate
    self.totals = totals
    if let totals { threadNames[totals.thread] = totals.name }
  }

  var stacks: [[UInt64]] { stackTable.stacks }

  mutating func stackID(_ frames: [UInt64]) -> Int32 { stackTable.id(frames) }

  /// The name of a synthetic address (below 4096).
  func syntheticName(_ address: UInt64) -> String { kernelStates.name(of: address) }

  func labels(of id: UInt64) -> [String: String] { labelSets.labels(of: id) }

  private mutating func localLabels(_ raw: UInt64, _ cache: inout [UInt64: UInt64]) -> UInt64 {
    labelSets.local(raw, bounded: totals != nil, cache: &cache) { LabelRegistry.shared.labels(for: $0) }
  }

  // MARK: Ingesting

  /// Parses what a drain wrote (``SampleRecords``).
  mutating func ingest(_ buffer: UnsafeRawBufferPointer) {
    var frames: [UInt64] = []
    frames.reserveCapacity(Int(CAP_MAX_DEPTH) + 2)
    var labelCache: [UInt64: UInt64] = [:]
    for record in SampleRecords(buffer) {
      let header = record.header
      let labels = localLabels(header.labels, &labelCache)
      records += 1
      var sample = RawSample(
        timestamp: header.timestamp_ns, count: header.weight, stack: nil, flags: header.flags, task: header.task,
        labels: labels)
      switch RecordDecoder.kind(of: record) {
      case .allocation:
        if RecordDecoder.frames(of: record, into: &frames) { truncatedSamples += 1 }
        let (events, amount) = RecordDecoder.allocationEstimate(size: Double(header.weight), rate: allocationRate)
        addEvent(sample, tid: header.tid, stack: stackID(frames), events: events, amount: amount, heapID: header.heap_id)
      case .lock(let kind):
        guard kind & lockKind != 0 else { continue }
        if RecordDecoder.frames(of: record, into: &frames) { truncatedSamples += 1 }
        let (events, amount) = RecordDecoder.lockEstimate(delay: Double(header.weight), rate: lockRate)
        addEvent(sample, tid: header.tid, stack: stackID(frames), events: events, amount: amount, heapID: 0)
      case .signalBlocked:
        sample.stack = signalBlockedStack(header.tid)
        (sample.task, sample.labels) = (0, 0)
        appendSample(sample, thread: header.tid)
      case .repeatOfPrevious:
        (sample.task, sample.labels) = (0, 0)
        appendSample(sample, thread: header.tid)
      case .sample:
        if RecordDecoder.frames(of: record, into: &frames) { truncatedSamples += Int64(header.weight) }
        sample.stack = stackID(frames)
        appendSample(sample, thread: header.tid)
      }
    }
  }

  /// The stack of a thread whose signal was never handled because it blocks
  /// the signal: its kernel state (read now, off the signal path) under
  /// `[signal blocked]`.
  private mutating func signalBlockedStack(_ tid: Int32) -> Int32 {
    let state = KernelThreadState.read(tid).frameName
    let address = kernelStates.address(of: state)
    return stackID([address, SyntheticFrame.signalBlocked.rawValue].compactMap { $0 })
  }

  private mutating func appendSample(_ sample: RawSample, thread tid: Int32) {
    if threadNames[tid] == nil { firstSeen(tid) }
    log.append(sample, thread: tid)
  }

  private mutating func addEvent(
    _ sample: RawSample, tid: Int32, stack: Int32, events: Double, amount: Double, heapID: UInt64
  ) {
    addAllocation(
      tid: tid, timestamp: sample.timestamp, stack: stack, flags: sample.flags, raw: 1, objects: events,
      bytes: amount, task: sample.task, labels: sample.labels, heapID: heapID)
  }

  /// Adds one sampled event (or a total of several) to its thread, or to
  /// the running total of its stack.
  mutating func addAllocation(
    tid: Int32, timestamp: UInt64, stack: Int32, flags: UInt16, raw: UInt64, objects: Double, bytes: Double,
    task: UInt64 = 0, labels: UInt64 = 0, heapID: UInt64 = 0
  ) {
    if totals != nil {
      totals!.add(
        stack: stack, labels: labels, flags: flags, timestamp: timestamp, raw: raw, objects: objects, bytes: bytes,
        heapID: heapID)
      return
    }
    appendSample(
      RawSample(
        timestamp: timestamp, count: raw, stack: stack, flags: flags, objects: objects, bytes: bytes, heapID: heapID,
        task: task, labels: labels),
      thread: tid)
  }

  /// The pseudo-threads of task wall samples (suspended and enqueued
  /// tasks): of task-scoped sessions' scopes, and of every task.
  static let suspendedTasksThread: Int32 = Int32.max - 1
  static let allTasksThread: Int32 = Int32.max - 2

  /// A sample of a task while it is on no thread: `frames` leaf first (a
  /// marker, then its await chain), `labelID` the task's registry label id
  /// (with its scope).
  mutating func addTaskSample(
    frames: [UInt64], labelID: UInt64, count: UInt64, timestamp: UInt64, task: UInt64,
    thread tid: Int32 = Self.suspendedTasksThread
  ) {
    var cache: [UInt64: UInt64] = [:]
    let labels = localLabels(labelID, &cache)
    if threadNames[tid] == nil { threadNames[tid] = "tasks (suspended, enqueued)" }
    records += 1
    log.append(
      RawSample(timestamp: timestamp, count: count, stack: stackID(frames), flags: 0, task: task, labels: labels),
      thread: tid)
  }

  /// Drops a thread's samples (a pseudo-thread a session did not ask for).
  mutating func dropSamples(ofThread tid: Int32) {
    log.removeThread(tid)
    threadNames[tid] = nil
  }

  // MARK: Live heap

  /// Sets each allocation sample's in-use part: all of it when its heap id
  /// is in `live`, none otherwise (running totals: the sum of their live
  /// records in `live`).
  mutating func applyLive(_ live: Set<UInt64>) {
    if totals != nil {
      totals!.applyLive(live)
      return
    }
    log.updateEach { sample in
      let alive = sample.heapID != 0 && live.contains(sample.heapID)
      sample.liveObjects = alive ? sample.objects : 0
      sample.liveBytes = alive ? sample.bytes : 0
    }
  }

  /// Running totals: see ``RunningTotals/pruneLive(keeping:before:)``.
  mutating func pruneLive(keeping live: Set<UInt64>, before boundary: UInt64) {
    totals?.pruneLive(keeping: live, before: boundary)
  }

  /// Live records held by running totals.
  var liveRecordCount: Int { totals?.liveRecordCount ?? 0 }

  // MARK: Consumers of a shared session

  /// Where a consumer of a shared session began reading. Consumers read
  /// logged samples only, never running totals.
  struct Mark: Sendable {
    var counts = SampleLog.Mark()
    var truncatedSamples: Int64 = 0
    /// The sampler's counters then.
    var counters = SamplerCounters()
  }

  func mark(counters: SamplerCounters = SamplerCounters()) -> Mark {
    Mark(counts: log.mark(), truncatedSamples: truncatedSamples, counters: counters)
  }

  /// What was collected after `mark`.
  func since(_ mark: Mark) -> SampleCollector {
    var result = self
    result.log = log.since(mark.counts)
    result.truncatedSamples = max(0, truncatedSamples - mark.truncatedSamples)
    return result
  }

  /// Records held (a running total counts as one).
  var recordCount: Int { log.count + (totals?.entries.count ?? 0) }

  /// Drops samples no consumer will read (those before every mark), so a
  /// session shared by overlapping consumers does not grow without end.
  mutating func trim(keeping marks: [Mark]) {
    log.trim(keeping: marks.map(\.counts))
  }

  /// Drops the stacks and label sets no held sample names, renumbering the
  /// rest (their order kept), once at least `threshold` stacks or label
  /// sets are held and half of them are unused: a sampler read by rotating
  /// consumers (the flight recorder, the push exporters) otherwise keeps
  /// every stack and every request's labels (`trace_id`) it ever saw. Running totals are left whole.
  /// Returns old stack id → new id when it compacted.
  @discardableResult
  mutating func compact(threshold: Int = 1024) -> [Int32: Int32]? {
    guard totals == nil, stackTable.count >= threshold || labelSets.sets.count >= threshold else { return nil }
    var stacksUsed = Set<Int32>()
    var labelsUsed = Set<UInt64>()
    log.forEachSample { sample in
      if let stack = sample.stack { stacksUsed.insert(stack) }
      labelsUsed.insert(LabelScope.labels(of: sample.labels))
    }
    guard stacksUsed.count * 2 <= stackTable.count || labelsUsed.count * 2 <= labelSets.sets.count else { return nil }
    let stacks = stackTable.retain(stacksUsed)
    let labels = labelSets.retain(labelsUsed)
    log.updateAll { sample in
      if let stack = sample.stack { sample.stack = stacks[stack] }
      let local = LabelScope.labels(of: sample.labels)
      sample.labels = (sample.labels & 0xFFFF_FFFF_0000_0000) | (labels[local] ?? 0)
    }
    return stacks
  }

  /// Keeps only the samples whose label set passes `include` (label set
  /// ids, 0 for none); repeats keep the labels of the sample they repeat.
  mutating func keepSamples(labelled include: (UInt64) -> Bool) {
    var table = stackTable
    log.keep(unknown: { table.id([SyntheticFrame.unknownStack.rawValue]) }, where: { include($0.labels) })
    stackTable = table
    totals?.keep { include($0.labels) }
  }

  /// Per thread, in time order, every repeat given the stack the thread had
  /// then (``SampleLog/resolved(unknown:)``); running totals under their
  /// pseudo-thread.
  mutating func resolvedSamples() -> [Int32: [RawSample]] {
    var table = stackTable
    var result = log.resolved { table.id([SyntheticFrame.unknownStack.rawValue]) }
    stackTable = table
    if let totals { result[totals.thread] = totals.entries }
    return result
  }

  /// A thread's first sample: its name, and whether it is the profiler's.
  private mutating func firstSeen(_ tid: Int32) {
    threadNames[tid] = readThreadName(tid)
    if ProfilerThreads.contains(tid) { profilerThreads.insert(tid) }
  }
}
