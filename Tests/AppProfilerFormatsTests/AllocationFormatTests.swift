@testable import AppProfilerFormats
import Foundation
import Testing

/// An alloc profile: Payload objects from makePayloads (type frame as leaf),
/// a malloc'd buffer from makeBuffer.
func allocationProfile() -> Profile {
  var profile = Profile(
    mode: .alloc, engine: "test", intervalNanoseconds: 65_536, startTimeNanoseconds: 0, durationNanoseconds: 1_000_000_000)
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
        .init(stack: 0, timestampNanoseconds: 0, count: 1366, bytes: 65_568, rawCount: 1),
        .init(stack: 0, timestampNanoseconds: 10, count: 1366, bytes: 65_568, rawCount: 1),
        .init(stack: 1, timestampNanoseconds: 20, count: 1, bytes: 1_000_000, rawCount: 1),
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
    let objects = try #require((json["x-app-profiler"] as? [String: Any])?["objects"] as? [[Int]])
    #expect(objects.first?.reduce(0, +) == 1366 * 2 + 1)
    let decoded = try SpeedscopeDecoder().decode(bytes)
    #expect(decoded.mode == .alloc)
    let total = decoded.threads.flatMap(\.samples).reduce(Int64(0)) { $0 + $1.bytes }
    #expect(total == 65_568 * 2 + 1_000_000)
  }

  @Test func pprofKeepsObjectsBytesRawCountsAndTypes() throws {
    let profile = allocationProfile()
    let decoded = try PprofDecoder().decode(PprofEncoder().encode(profile))
    #expect(decoded.mode == .alloc)
    #expect(decoded.intervalNanoseconds == 65_536)
    let samples = decoded.threads.flatMap(\.samples)
    #expect(samples.reduce(0) { $0 + $1.count } == 1366 * 2 + 1)
    #expect(samples.reduce(0) { $0 + $1.bytes } == 65_568 * 2 + 1_000_000)
    #expect(samples.reduce(0) { $0 + $1.rawCount } == 3)
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
