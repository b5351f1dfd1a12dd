@testable import AppProfiler
import CAppProfiler
import Foundation
import Testing

/// The aggregation pieces on their own, with synthetic input: no sampler,
/// no registry, no `/proc`.
@Suite struct AggregationPiecesTests {
  static func sample(_ stack: Int32?, at timestamp: UInt64, count: UInt64 = 1, labels: UInt64 = 0) -> RawSample {
    RawSample(timestamp: timestamp, count: count, stack: stack, flags: 0, labels: labels)
  }

  static func stacks(_ log: [RawSample]) -> [Int32?] { log.map(\.stack) }

  // MARK: StackTable

  @Test func stackTableNamesEachDistinctStackOnceInFirstSeenOrder() {
    var table = StackTable()
    #expect(table.id([0x10, 0x20]) == 0)
    #expect(table.id([0x30]) == 1)
    #expect(table.id([0x10, 0x20]) == 0)
    #expect(table.id([0x20, 0x10]) == 2, "order matters: leaf first")
    #expect(table.count == 3 && table[1] == [0x30])
  }

  // MARK: RecordDecoder

  static func record(flags: Int, frames: [UInt64], objectType: UInt64 = 0, weight: UInt64 = 1) -> [UInt8] {
    var header = cap_sample_header()
    header.flags = UInt16(flags)
    header.object_type = objectType
    header.weight = weight
    return SampleRecords.encode([(header, frames)])
  }

  static func decode(_ bytes: [UInt8]) -> (kind: RecordDecoder.Kind, frames: [UInt64], truncated: Bool) {
    bytes.withUnsafeBytes { buffer in
      let record = Array(SampleRecords(buffer))[0]
      var frames: [UInt64] = []
      let truncated = RecordDecoder.frames(of: record, into: &frames)
      return (RecordDecoder.kind(of: record), frames, truncated)
    }
  }

  @Test func decoderTellsTheKindOfEachRecord() {
    #expect(Self.decode(Self.record(flags: 0, frames: [0x5000])).kind == .sample)
    #expect(Self.decode(Self.record(flags: CAP_SAMPLE_REPEAT, frames: [])).kind == .repeatOfPrevious)
    #expect(
      Self.decode(Self.record(flags: CAP_SAMPLE_UNDELIVERED | CAP_SAMPLE_SIGNAL_BLOCKED, frames: [])).kind
        == .signalBlocked)
    // Undelivered alone (a lost signal the thread did not block) is a sample.
    #expect(Self.decode(Self.record(flags: CAP_SAMPLE_UNDELIVERED, frames: [0x5000])).kind == .sample)
    #expect(Self.decode(Self.record(flags: CAP_SAMPLE_ALLOCATION, frames: [0x5001])).kind == .allocation)
    #expect(
      Self.decode(Self.record(flags: CAP_SAMPLE_LOCK_HOLD, frames: [0x5001])).kind
        == .lock(UInt16(CAP_SAMPLE_LOCK_HOLD)))
  }

  @Test func decoderKeepsASignalLeafAndStepsReturnAddressesBack() {
    let cpu = Self.decode(Self.record(flags: 0, frames: [0x5000, 0x6001, SyntheticFrame.async.rawValue, 0x7001]))
    #expect(cpu.frames == [0x5000, 0x6000, SyntheticFrame.async.rawValue, 0x7000])
    #expect(!cpu.truncated)
    // An allocation's leaf is a return address too, under the object's type.
    let allocation = Self.decode(Self.record(flags: CAP_SAMPLE_ALLOCATION, frames: [0x5001, 0x6001], objectType: 0xA0))
    #expect(allocation.frames == [SyntheticFrame.typeFrame(0xA0), 0x5000, 0x6000])
    let truncated = Self.decode(Self.record(flags: CAP_SAMPLE_TRUNCATED, frames: [0x5000]))
    #expect(truncated.truncated && truncated.frames == [0x5000, SyntheticFrame.truncated.rawValue])
    let unbounded = Self.decode(Self.record(flags: CAP_SAMPLE_NO_STACK_BOUNDS, frames: [0x5000]))
    #expect(!unbounded.truncated && unbounded.frames == [0x5000, SyntheticFrame.stackUnavailable.rawValue])
  }

  @Test func decoderEstimatesScaleByTheSamplingProbability() {
    // A 512-byte allocation at a 512-byte rate: p = 1 − 1/e.
    let allocation = RecordDecoder.allocationEstimate(size: 512, rate: 512)
    #expect(abs(allocation.events - 1 / (1 - exp(-1.0))) < 1e-12)
    #expect(abs(allocation.amount - 512 * allocation.events) < 1e-9)
    // Unsampled (rate 0): as it is.
    #expect(RecordDecoder.allocationEstimate(size: 100, rate: 0) == (1, 100))
    // Lock delays: 25 µs at a 100 µs rate stands for 4 contentions, 100 µs.
    #expect(RecordDecoder.lockEstimate(delay: 25_000, rate: 100_000) == (4, 100_000))
    #expect(RecordDecoder.lockEstimate(delay: 300_000, rate: 100_000) == (1, 300_000))
    #expect(RecordDecoder.lockEstimate(delay: 0, rate: 100_000) == (1, 0), "a zero delay is not infinite")
  }

  // MARK: SampleLog

  @Test func sinceAMarkHoldsOnlyLaterSamplesAndTheirRepeatsResolve() {
    var log = SampleLog()
    log.append(Self.sample(0, at: 1, labels: 5), thread: 1)
    log.append(Self.sample(nil, at: 2), thread: 1)
    let mark = log.mark()
    #expect(mark == [1: 2])
    log.append(Self.sample(nil, at: 3), thread: 1)
    log.append(Self.sample(1, at: 4), thread: 1)
    log.append(Self.sample(2, at: 5), thread: 2)
    let after = log.since(mark)
    #expect(after.count == 3)
    let resolved = after.resolved { 99 }
    #expect(Self.stacks(resolved[1]!) == [0, 1], "the repeat after the mark repeats the stack before it")
    #expect(resolved[1]![0].labels == 5, "with its labels")
    #expect(Self.stacks(resolved[2]!) == [2])
  }

  @Test func trimmingKeepsMarksValid() {
    var log = SampleLog()
    for t in 0..<4 { log.append(Self.sample(Int32(t), at: UInt64(t)), thread: 1) }
    let early = log.mark()
    log.append(Self.sample(nil, at: 10), thread: 1)
    let late = log.mark()
    log.append(Self.sample(7, at: 11), thread: 1)
    let before = log.since(late).resolved { 99 }
    log.trim(keeping: [late, early])
    #expect(log.count == 2, "the samples before the earliest mark are gone")
    #expect(log.since(late).resolved { 99 }.mapValues(Self.stacks) == before.mapValues(Self.stacks))
    // A repeat first after the cut still finds its stack: the last one cut.
    #expect(Self.stacks(log.resolved { 99 }[1]!) == [3, 7])
    // A mark from before the cut reads from the front that is left.
    #expect(log.since(early).count == 2)
    log.trim(keeping: [])
    #expect(log.count == 2, "no consumer: nothing is trimmed")
  }

  @Test func resolvingSortsByTimeAndFillsRepeatsFromNeighbours() {
    var log = SampleLog()
    log.append(Self.sample(nil, at: 1), thread: 1)  // before any stack: takes the next one
    log.append(Self.sample(4, at: 3), thread: 1)
    log.append(Self.sample(5, at: 2), thread: 1)  // drained later, happened earlier
    log.append(Self.sample(nil, at: 3), thread: 1)  // same time: collection order
    log.append(Self.sample(nil, at: 1), thread: 2)  // never a stack
    var asked = 0
    let resolved = log.resolved {
      asked += 1
      return 99
    }
    #expect(resolved[1]!.map(\.timestamp) == [1, 2, 3, 3])
    #expect(Self.stacks(resolved[1]!) == [5, 5, 4, 4])
    #expect(Self.stacks(resolved[2]!) == [99])
    #expect(asked == 1)
  }

  @Test func keepingByLabelResolvesRepeatsFirst() {
    var log = SampleLog()
    log.append(Self.sample(0, at: 1, labels: 1), thread: 1)
    log.append(Self.sample(nil, at: 2), thread: 1)
    log.append(Self.sample(1, at: 3, labels: 2), thread: 1)
    log.append(Self.sample(2, at: 4, labels: 2), thread: 2)
    log.keep(unknown: { 99 }, where: { $0.labels == 1 })
    #expect(log.threads.keys.sorted() == [1], "a thread left with nothing is gone")
    #expect(Self.stacks(log.threads[1]!) == [0, 0])
  }

  // MARK: RunningTotals

  @Test func runningTotalsAddUpPerStackAndLabelsAndTrackWhatIsAlive() {
    var totals = RunningTotals(thread: 1, name: "all threads")
    totals.add(stack: 0, labels: 0, flags: 0, timestamp: 1, raw: 1, objects: 2, bytes: 200, heapID: 10)
    totals.add(stack: 0, labels: 0, flags: 0, timestamp: 2, raw: 1, objects: 1, bytes: 100, heapID: 11)
    totals.add(stack: 0, labels: 3, flags: 0, timestamp: 3, raw: 1, objects: 1, bytes: 50, heapID: 12)
    totals.add(stack: 1, labels: 0, flags: 0, timestamp: 4, raw: 1, objects: 1, bytes: 10, heapID: 0)
    #expect(totals.entries.count == 3)
    #expect(totals.entries[0].count == 2 && totals.entries[0].bytes == 300 && totals.entries[0].timestamp == 2)
    #expect(totals.liveRecordCount == 3, "untracked allocations (heap id 0) are not remembered")
    totals.applyLive([11, 12])
    #expect(totals.entries.map(\.liveBytes) == [100, 50, 0])
    totals.applyLive([10])
    #expect(totals.entries.map(\.liveBytes) == [200, 0, 0], "recomputed, not accumulated")
    // Freed ids are forgotten, except those from the boundary on.
    totals.pruneLive(keeping: [10], before: 12)
    #expect(totals.liveRecordCount == 2)
    totals.keep { $0.labels == 0 }
    #expect(totals.entries.count == 2 && totals.liveRecordCount == 1)
    totals.add(stack: 0, labels: 0, flags: 0, timestamp: 5, raw: 1, objects: 1, bytes: 1, heapID: 0)
    #expect(totals.entries.count == 2 && totals.entries[0].bytes == 301, "the index survives keep")
  }

  // MARK: LabelSetTable, KernelStateFrames

  @Test func labelSetsAreLocalAndBoundedForRunningTotals() {
    var table = LabelSetTable()
    var cache: [UInt64: UInt64] = [:]
    let scoped: UInt64 = (7 << 32) | 3
    let registry: (UInt64) -> [String: String] = { _ in ["route": "/a", "trace_id": "t1"] }
    let local = table.local(scoped, bounded: false, cache: &cache, registry: registry)
    #expect(local == (7 << 32) | 1, "the scope half is kept")
    #expect(table.labels(of: local) == ["route": "/a", "trace_id": "t1"])
    var totalsTable = LabelSetTable()
    var totalsCache: [UInt64: UInt64] = [:]
    let bounded = totalsTable.local(scoped, bounded: true, cache: &totalsCache, registry: registry)
    #expect(bounded == 1 && totalsTable.labels(of: bounded) == ["route": "/a"])
    #expect(table.local(0, bounded: false, cache: &cache, registry: registry) == 0)
    #expect(table.labels(of: 42) == [:])
  }

  @Test func labelSetsRetainOnlyThoseNamed() {
    var table = LabelSetTable()
    let a = table.index(of: ["request": "a"])
    let b = table.index(of: ["request": "b"])
    let c = table.index(of: ["request": "c"])
    let renumbered = table.retain([a, c])
    #expect(renumbered == [0: 0, a: 1, c: 2])
    #expect(table.labels(of: 2) == ["request": "c"] && table.sets.count == 3)
    #expect(table.index(of: ["request": "b"]) == 3 && b == 2)
  }

  @Test func kernelStatesGetAddressesUntilTheSyntheticRangeEnds() {
    var states = KernelStateFrames()
    #expect(states.address(of: "[kernel: futex]") == KernelStateFrames.base)
    #expect(states.address(of: "[kernel: running]") == KernelStateFrames.base + 1)
    #expect(states.address(of: "[kernel: futex]") == KernelStateFrames.base)
    #expect(states.name(of: KernelStateFrames.base + 1) == "[kernel: running]")
    #expect(states.name(of: SyntheticFrame.truncated.rawValue) == "[truncated]")
    #expect(states.name(of: 900) == "[synthetic]")
    for index in 2..<3072 { _ = states.address(of: "state \(index)") }
    #expect(states.address(of: "one too many") == nil)
  }
}

extension AggregationPiecesTests {
  /// A collector read by rotating consumers keeps only the stacks its held
  /// samples name, renumbered in their order.
  @Test func compactingDropsStacksAndLabelSetsNoSampleNames() {
    var collector = SampleCollector()
    for index in 0..<8 {
      let stack = collector.stackID([0x5000 + UInt64(index)])
      collector.addAllocation(tid: 1, timestamp: UInt64(index), stack: stack, flags: 0, raw: 1, objects: 1, bytes: 1)
    }
    let mark = collector.mark()
    collector.trim(keeping: [mark])
    #expect(collector.compact(threshold: 4) == [7: 0], "only the stack a repeat after the cut would take stays")
    #expect(collector.stacks == [[0x5007]])
    let kept = collector.stackID([0x7000])
    collector.addAllocation(tid: 1, timestamp: 9, stack: kept, flags: 0, raw: 1, objects: 1, bytes: 1)
    #expect(collector.compact(threshold: 4) == nil, "below the threshold: left alone")
    for index in 0..<5 { _ = collector.stackID([0x6000 + UInt64(index)]) }
    #expect(collector.compact(threshold: 4) == [0: 0, kept: 1], "unused stacks go, the order stays")
    #expect(collector.stacks == [[0x5007], [0x7000]])
    #expect(collector.resolvedSamples()[1]?.map(\.stack) == [1])
    #expect(collector.compact(threshold: 1) == nil, "nothing to gain: left alone")
  }

  /// Every request's label set (a `trace_id` each) goes once no held
  /// sample carries it; the scope half of a sample's id is kept.
  @Test func compactingDropsLabelSetsOfSamplesGone() {
    var collector = SampleCollector()
    var ids: [UInt64] = []
    for index in 0..<6 {
      let id = LabelRegistry.shared.retain(["trace_id": "t\(index)"])
      ids.append(id)
      collector.addTaskSample(
        frames: [0x5000], labelID: id | (UInt64(9) << 32), count: 1, timestamp: UInt64(index), task: 0, thread: 1)
    }
    defer { ids.forEach(LabelRegistry.shared.release) }
    #expect(collector.labelSets.sets.count == 7)
    collector.trim(keeping: [SampleCollector.Mark(counts: [1: 5])])
    #expect(collector.compact(threshold: 4) != nil)
    #expect(collector.labelSets.sets.count == 3, "none, the carried sample's and the last one's")
    let last = collector.resolvedSamples()[1]!.last!
    #expect(collector.labels(of: last.labels) == ["trace_id": "t5"])
    #expect(LabelScope.of(labelID: last.labels) == 9)
  }
}
