/// One sample as collected: a stack id into the collector's ``StackTable``
/// and what the sample stands for.
struct RawSample: Sendable {
  var timestamp: UInt64
  var count: UInt64
  /// The stack, or nil for a record that repeated the thread's previous
  /// stack (`CAP_SAMPLE_REPEAT`). ``SampleLog/resolved(unknown:)`` gives
  /// every sample its stack.
  var stack: Int32?
  var flags: UInt16
  /// Allocation and lock records: estimated events and amount (bytes or ns;
  /// ``RecordDecoder``).
  var objects: Double = 0
  var bytes: Double = 0
  /// Allocation records: the part of `objects`/`bytes` still alive, and the
  /// sample's id in the live-heap set.
  var liveObjects: Double = 0
  var liveBytes: Double = 0
  var heapID: UInt64 = 0
  /// The Swift task that was running (AsyncTask address), 0 for none.
  var task: UInt64 = 0
  /// Its label set (``LabelSetTable``), with the scope of a task-scoped
  /// session in the high half (``LabelScope``).
  var labels: UInt64 = 0

  /// Takes the stack, task and labels of the sample it repeats.
  mutating func repeatStack(of previous: RawSample) {
    stack = previous.stack
    task = previous.task
    labels = previous.labels
  }
}

/// Samples per thread, in the order collected, with what consumers of a
/// shared session need: marks of where each began reading, a view of what
/// came after a mark, and trimming of what no consumer will read.
///
/// Repeats are resolved in one place (``resolved(unknown:)``). A log cut at
/// a mark or trimmed keeps, per thread, the last sample with a stack before
/// the cut (`carried`), so a repeat right after the cut still finds the
/// stack it repeats.
struct SampleLog: Sendable {
  private(set) var threads: [Int32: [RawSample]] = [:]
  /// Per thread, samples dropped from the front: marks count from the first
  /// sample ever collected.
  private var dropped: [Int32: Int] = [:]
  /// Per thread, the last sample with a stack before the front.
  private var carried: [Int32: RawSample] = [:]

  /// Per thread, how many samples had been collected (dropped or not).
  typealias Mark = [Int32: Int]

  mutating func append(_ sample: RawSample, thread tid: Int32) {
    threads[tid, default: []].append(sample)
  }

  mutating func removeThread(_ tid: Int32) {
    threads[tid] = nil
    dropped[tid] = nil
    carried[tid] = nil
  }

  /// Samples held.
  var count: Int { threads.values.reduce(0) { $0 + $1.count } }

  mutating func updateEach(_ body: (inout RawSample) -> Void) {
    for tid in threads.keys {
      var list = threads[tid]!
      for index in list.indices { body(&list[index]) }
      threads[tid] = list
    }
  }

  func mark() -> Mark {
    var mark = Mark()
    for (tid, list) in threads { mark[tid] = (dropped[tid] ?? 0) + list.count }
    return mark
  }

  /// What was collected after `mark`.
  func since(_ mark: Mark) -> SampleLog {
    var result = SampleLog()
    for (tid, list) in threads {
      let start = max(0, min(list.count, (mark[tid] ?? 0) - (dropped[tid] ?? 0)))
      result.threads[tid] = Array(list[start...])
      result.carried[tid] = Self.lastWithStack(list[..<start]) ?? carried[tid]
    }
    return result
  }

  /// Drops the samples before every one of `marks`.
  mutating func trim(keeping marks: [Mark]) {
    guard !marks.isEmpty else { return }
    for (tid, list) in threads {
      let first = marks.map { $0[tid] ?? 0 }.min() ?? 0
      let start = max(0, min(list.count, first - (dropped[tid] ?? 0)))
      guard start > 0 else { continue }
      carried[tid] = Self.lastWithStack(list[..<start]) ?? carried[tid]
      threads[tid] = Array(list[start...])
      dropped[tid, default: 0] += start
    }
  }

  private static func lastWithStack(_ samples: ArraySlice<RawSample>) -> RawSample? {
    samples.last { $0.stack != nil }
  }

  /// Per thread, in time order (ties in collection order), every repeat
  /// given the stack the thread had then: its previous sample's; the next
  /// one's when a run came before the thread's first handled signal; and
  /// `unknown()` when the thread has no sample with a stack at all.
  func resolved(unknown: () -> Int32) -> [Int32: [RawSample]] {
    var result: [Int32: [RawSample]] = [:]
    var unknownStack: Int32?
    for (tid, list) in threads {
      var sorted = list.enumerated().sorted {
        $0.element.timestamp != $1.element.timestamp ? $0.element.timestamp < $1.element.timestamp : $0.offset < $1.offset
      }.map(\.element)
      var previous = carried[tid]
      var waiting: [Int] = []
      for index in sorted.indices {
        if sorted[index].stack != nil {
          previous = sorted[index]
          for waitingIndex in waiting { sorted[waitingIndex].repeatStack(of: sorted[index]) }
          waiting.removeAll()
        } else if let previous {
          sorted[index].repeatStack(of: previous)
        } else {
          waiting.append(index)
        }
      }
      if !waiting.isEmpty {
        if unknownStack == nil { unknownStack = unknown() }
        for waitingIndex in waiting { sorted[waitingIndex].stack = unknownStack }
      }
      result[tid] = sorted
    }
    return result
  }

  /// Keeps only the samples `include` accepts, after resolving repeats (so
  /// each keeps the labels of the sample it repeats); threads left with none
  /// are removed.
  mutating func keep(unknown: () -> Int32, where include: (RawSample) -> Bool) {
    var kept = resolved(unknown: unknown)
    for tid in kept.keys {
      kept[tid]!.removeAll { !include($0) }
      if kept[tid]!.isEmpty { kept[tid] = nil }
    }
    self = SampleLog()
    threads = kept
  }

  /// Every sample held, carried ones included.
  func forEachSample(_ body: (RawSample) -> Void) {
    for list in threads.values { list.forEach(body) }
    carried.values.forEach(body)
  }

  /// Applies `body` to every sample held, carried ones included.
  mutating func updateAll(_ body: (inout RawSample) -> Void) {
    updateEach(body)
    for tid in carried.keys { body(&carried[tid]!) }
  }
}
