/// The cumulative allocation profile: one running total per stack and label
/// set instead of every sample, so its size does not grow with time.
///
/// Totals are presented as the samples of one pseudo-thread (`thread`).
/// Each tracked allocation not seen freed is remembered by its heap id
/// (bounded by the live-heap set's bound, heap_set.c), so the in-use part
/// of each total can be recomputed from the set of ids still alive.
struct RunningTotals: Sendable {
  let thread: Int32
  let name: String
  private(set) var entries: [RawSample] = []

  private struct Key: Hashable {
    var stack: Int32
    var labels: UInt64
  }
  private var index: [Key: Int] = [:]
  private struct LiveRecord {
    var key: Key
    var objects: Double
    var bytes: Double
  }
  private var live: [UInt64: LiveRecord] = [:]

  init(thread: Int32, name: String) {
    self.thread = thread
    self.name = name
  }

  /// Adds one sampled allocation (or a total of several) to its stack's total.
  mutating func add(
    stack: Int32, labels: UInt64, flags: UInt16, timestamp: UInt64, raw: UInt64, objects: Double, bytes: Double,
    heapID: UInt64
  ) {
    let key = Key(stack: stack, labels: labels)
    if heapID != 0 { live[heapID] = LiveRecord(key: key, objects: objects, bytes: bytes) }
    if let at = index[key] {
      entries[at].count += raw
      entries[at].objects += objects
      entries[at].bytes += bytes
      entries[at].timestamp = timestamp
      return
    }
    index[key] = entries.count
    entries.append(
      RawSample(timestamp: timestamp, count: raw, stack: stack, flags: flags, objects: objects, bytes: bytes, labels: labels))
  }

  /// Sets each total's in-use part: the sum of its live records in `alive`.
  mutating func applyLive(_ alive: Set<UInt64>) {
    for at in entries.indices {
      entries[at].liveObjects = 0
      entries[at].liveBytes = 0
    }
    for (id, record) in live where alive.contains(id) {
      guard let at = index[record.key] else { continue }
      entries[at].liveObjects += record.objects
      entries[at].liveBytes += record.bytes
    }
  }

  /// Forgets live records freed since (not in `alive`, taken after they
  /// were drained). Ids from `boundary` on may have been drained before
  /// their insertion was visible: kept for next time.
  mutating func pruneLive(keeping alive: Set<UInt64>, before boundary: UInt64) {
    live = live.filter { alive.contains($0.key) || $0.key >= boundary }
  }

  /// Live records held.
  var liveRecordCount: Int { live.count }

  /// Keeps only the totals `include` accepts.
  mutating func keep(where include: (RawSample) -> Bool) {
    entries.removeAll { !include($0) }
    index = [:]
    for (at, entry) in entries.enumerated() { index[Key(stack: entry.stack ?? -1, labels: entry.labels)] = at }
    live = live.filter { index[$0.value.key] != nil }
  }
}
