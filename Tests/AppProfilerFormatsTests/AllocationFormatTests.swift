@testable import AppProfilerFormats
import Foundation
import Testing

/// An alloc profile: Payload objects from makePayloads (type frame as leaf),
/// a malloc'd buffer from makeBuffer.
func allocationProfile() -> Profile {
  var profile = Profile(
    mode: .alloc, engine: "test",
    sampleTypes: [.init("alloc_objects", "count"), .init("alloc_space", "bytes"), .init("samples", "count")],
    defaultSampleType: 1, periodType: .init("space", "bytes"), period: 65_536, startTimeNanoseconds: 0,
    durationNanoseconds: 1_000_000_000)
  profile.mappings = [.init(start: 0x1000, end: 0x9000, fileOffset: 0, path: "/usr/bin/app", buildID: "ab")]
  profile.functions = [
    .init(name: "main", systemName: "main", file: "main.swift"),
    .init(name: "makePayloads()", systemName: "$s3app12makePayloadsyyF", file: "app.swift"),
    .init(name: "app.Payload", systemName: Profile.Function.allocatedTypeMarker),
    .init(name: "makeBuffer()", systemName: "$s3app10makeBufferyyF", file: "app.swift"),
  ]
  profile.locations = [
    .init(address: 0x1100, mapping: 0, lines: [.init(function: 0, line: 5)]),
    .init(address: 0x1200, mapping: 0, lines: [.init(function: 1, line: 9)]),
    .init(address: 0, mapping: nil, lines: [.init(function: 2)]),
    .init(address: 0x1300, mapping: 0, lines: [.init(function: 3, line: 14)]),
  ]
  profile.stacks = [[2, 1, 0], [3, 0]]
  profile.threads = [
    .init(
      id: 9, name: "worker",
      samples: [
        .init(stack: 0, timestampNanoseconds: 0, values: [1366, 65_568, 1]),
        .init(stack: 0, timestampNanoseconds: 10, values: [1366, 65_568, 1]),
        .init(stack: 1, timestampNanoseconds: 20, values: [1, 1_000_000, 1]),
      ])
  ]
  return profile
}

@Suite struct AllocationFormatTests {
  @Test func speedscopeWeighsBytesAndCarriesObjects() throws {
    let bytes = SpeedscopeEncoder().encode(allocationProfile())
    let json = try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
    let profiles = try #require(json["profiles"] as? [[String: Any]])
    #expect(profiles.first?["unit"] as? String == "bytes")
    #expect((profiles.first?["weights"] as? [Int])?.reduce(0, +) == 65_568 * 2 + 1_000_000)
    let values = try #require((json["x-app-profiler"] as? [String: Any])?["values"] as? [String: [[Int]]])
    #expect(values["alloc_objects"]?.first?.reduce(0, +) == 1366 * 2 + 1)
    #expect(values["samples"]?.first?.reduce(0, +) == 3)
    let decoded = try SpeedscopeDecoder().decode(bytes)
    #expect(decoded.mode == .alloc)
    #expect(decoded.sampleTypes == allocationProfile().sampleTypes)
    let total = decoded.threads.flatMap(\.samples).reduce(Int64(0)) { $0 + decoded.value($1, "alloc_space") }
    #expect(total == 65_568 * 2 + 1_000_000)
    #expect(decoded.totalCount == 1366 * 2 + 1)
  }

  @Test func pprofKeepsObjectsBytesRawCountsAndTypes() throws {
    let profile = allocationProfile()
    let decoded = try PprofDecoder().decode(PprofEncoder().encode(profile))
    #expect(decoded.mode == .alloc)
    #expect(decoded.period == 65_536 && decoded.periodType == .init("space", "bytes"))
    #expect(decoded.sampleTypes == profile.sampleTypes && decoded.defaultSampleType == 1)
    let samples = decoded.threads.flatMap(\.samples)
    #expect(samples.reduce(0) { $0 + decoded.value($1, "alloc_objects") } == 1366 * 2 + 1)
    #expect(samples.reduce(0) { $0 + decoded.value($1, "alloc_space") } == 65_568 * 2 + 1_000_000)
    #expect(samples.reduce(0) { $0 + decoded.value($1, "samples") } == 3)
    #expect(decoded.functions.contains { $0.isAllocatedType && $0.name == "app.Payload" })
  }

  @Test func collapsedCountsBytes() throws {
    let text = String(decoding: CollapsedEncoder(threadPrefix: false).encode(allocationProfile()), as: UTF8.self)
    #expect(text.contains("main;makePayloads();app.Payload 131136"), "\(text)")
    #expect(text.contains("main;makeBuffer() 1000000"), "\(text)")
  }

  @Test func topListsTypesAndGivesSelfToTheCaller() {
    let top = TopFunctions(allocationProfile())
    #expect(top.unit == "bytes")
    #expect(top.types == [.init(name: "app.Payload", bytes: 131_136, objects: 2732)])
    let payloads = top.entries.first { $0.name == "makePayloads()" }
    #expect(payloads?.selfCount == 131_136 && payloads?.selfObjects == 2732)
    #expect(!top.entries.contains { $0.name == "app.Payload" })
    let text = top.render()
    #expect(text.contains("allocated Swift type") && text.contains("128.1 KiB") && text.contains("app.Payload"), "\(text)")
  }
}
