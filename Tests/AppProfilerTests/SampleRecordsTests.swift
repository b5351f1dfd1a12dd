@testable import AppProfiler
import CAppProfiler
import Foundation
import Testing

/// Aggregation on synthetic drain buffers: what `SampleCollector.ingest`
/// makes of each kind of record, with no sampler running.
@Suite struct SampleRecordsTests {
  static func header(
    tid: Int32 = 7, weight: UInt64 = 1, flags: Int = 0, timestamp: UInt64 = 100, objectType: UInt64 = 0
  ) -> cap_sample_header {
    var header = cap_sample_header()
    header.tid = tid
    header.weight = weight
    header.flags = UInt16(flags)
    header.timestamp_ns = timestamp
    header.object_type = objectType
    return header
  }

  static func ingest(_ records: [(header: cap_sample_header, frames: [UInt64])], into collector: inout SampleCollector) {
    let bytes = SampleRecords.encode(records)
    bytes.withUnsafeBytes { collector.ingest($0) }
  }

  @Test func recordsRoundTripThroughTheImportedHeader() {
    let bytes = SampleRecords.encode([
      (Self.header(tid: 3, weight: 9, flags: Int(CAP_SAMPLE_COMPLETE)), [0x5000, 0x6001]),
      (Self.header(tid: 4), []),
    ])
    #expect(bytes.count == 2 * MemoryLayout<cap_sample_header>.size + 16)
    let records = bytes.withUnsafeBytes { Array(SampleRecords($0)).map { ($0.header.tid, $0.header.weight, $0.depth) } }
    #expect(records.map(\.0) == [3, 4] && records.map(\.1) == [9, 1] && records.map(\.2) == [2, 0])
    // A record cut by the end of the buffer ends the sequence.
    let cut = Array(bytes.dropLast(MemoryLayout<cap_sample_header>.size + 1))
    #expect(cut.withUnsafeBytes { Array(SampleRecords($0)).count } == 0)
  }

  @Test func cpuRecordsKeepTheLeafAndStepCallersBack() {
    var collector = SampleCollector()
    Self.ingest(
      [
        (Self.header(weight: 2), [0x5000, 0x6001, 0x7001]),
        (Self.header(weight: 3, flags: Int(CAP_SAMPLE_REPEAT)), []),
        (Self.header(flags: Int(CAP_SAMPLE_TRUNCATED)), [0x5000]),
      ], into: &collector)
    let samples = collector.resolvedSamples()[7] ?? []
    #expect(samples.map(\.count) == [2, 3, 1])
    #expect(collector.stacks[Int(samples[0].stack!)] == [0x5000, 0x6000, 0x7000])
    #expect(samples[1].stack == samples[0].stack, "a repeat gets the thread's previous stack")
    #expect(collector.stacks[Int(samples[2].stack!)] == [0x5000, SyntheticFrame.truncated.rawValue])
    #expect(collector.truncatedSamples == 1)
    #expect(collector.records == 3)
  }

  @Test func allocationRecordsAreScaledByTheirProbability() {
    var collector = SampleCollector(allocationRate: 1024)
    Self.ingest(
      [(Self.header(weight: 1024, flags: Int(CAP_SAMPLE_ALLOCATION), objectType: 0xABC0), [0x5001, 0x6001])],
      into: &collector)
    let sample = collector.resolvedSamples()[7]?.first
    // p = 1 − e^(−1): 1/p objects of 1024 bytes.
    let objects = 1 / -expm1(-1.0)
    #expect(abs((sample?.objects ?? 0) - objects) < 1e-9)
    #expect(abs((sample?.bytes ?? 0) - objects * 1024) < 1e-6)
    // The type is a leaf frame of its own; every address is a return address.
    #expect(collector.stacks[Int(sample?.stack ?? 0)] == [SyntheticFrame.typeFrame(0xABC0), 0x5000, 0x6000])
  }

  @Test func lockRecordsGoToTheirKindAndAreScaledByDelay() {
    let records: [(header: cap_sample_header, frames: [UInt64])] = [
      (Self.header(weight: 50_000, flags: Int(CAP_SAMPLE_LOCK_WAIT)), [0x5001]),
      (Self.header(weight: 300_000, flags: Int(CAP_SAMPLE_LOCK_WAIT)), [0x5001]),
      (Self.header(weight: 200_000, flags: Int(CAP_SAMPLE_LOCK_HOLD)), [0x6001]),
    ]
    var block = SampleCollector(lockKind: UInt16(CAP_SAMPLE_LOCK_WAIT), lockRate: 100_000)
    var mutex = SampleCollector(lockKind: UInt16(CAP_SAMPLE_LOCK_HOLD), lockRate: 100_000)
    Self.ingest(records, into: &block)
    Self.ingest(records, into: &mutex)
    let waits = block.resolvedSamples()[7] ?? []
    // 50 µs at a 100 µs rate: recorded with p = 0.5, so 2 contentions of 100 µs in all.
    #expect(waits.map(\.objects) == [2, 1])
    #expect(waits.map(\.bytes) == [100_000, 300_000])
    let holds = mutex.resolvedSamples()[7] ?? []
    #expect(holds.count == 1 && holds.first?.bytes == 200_000)
    #expect(mutex.stacks[Int(holds[0].stack!)] == [0x6000])
  }
}
