import AppProfilerFormats
import Foundation
import Testing

/// `OTLPProfilesEncoder` read back with the official OpenTelemetry messages
/// (PyPI `opentelemetry-proto`, `profiles/v1development`), not a decoder of
/// our own: Tests/Support/decode_otlp_profiles.py.
@Suite struct OTLPEncoderTests {
  static let trace = "4bf92f3577b34da6a3ce929d0e0e4736"
  static let span = "00f067aa0ba902b7"

  /// Two windows of a cpu profile: `hot` 3 : 1 `cold`, the hot samples in a
  /// span (trace labels) of route /a.
  static func window(start: UInt64) -> Profile {
    var profile = Profile(
      mode: .cpu, engine: "hand-made", sampleTypes: [.init("samples", "count"), .init("cpu", "nanoseconds")],
      defaultSampleType: 1, periodType: .init("cpu", "nanoseconds"), period: 10_000_000,
      startTimeNanoseconds: start, durationNanoseconds: 1_000_000_000)
    profile.mappings = [.init(start: 0x1000, end: 0x9000, fileOffset: 0, path: "/srv/orders", buildID: "abcdef")]
    profile.functions = [
      .init(name: "main", systemName: "main", file: "/src/main.swift", startLine: 1),
      .init(name: "Orders.hot()", systemName: "$s6Orders3hotyyF", file: "/src/Orders.swift", startLine: 10),
      .init(name: "Orders.cold()", systemName: "$s6Orders4coldyyF", file: "/src/Orders.swift", startLine: 30),
    ]
    profile.locations = [
      .init(address: 0x1100, mapping: 0, lines: [.init(function: 0, line: 3)]),
      .init(address: 0x1200, mapping: 0, lines: [.init(function: 1, line: 12)]),
      .init(address: 0x1300, mapping: 0, lines: [.init(function: 2, line: 33)]),
    ]
    profile.stacks = [[1, 0], [2, 0]]
    profile.threads = [
      .init(
        id: 7, name: "worker",
        samples: [
          .init(
            stack: 0, timestampNanoseconds: 0, values: [30, 300_000_000],
            labels: ["route": "/a", "trace_id": trace, "span_id": span]),
          .init(stack: 1, timestampNanoseconds: 5, values: [10, 100_000_000], labels: ["route": "/b"]),
        ])
    ]
    return profile
  }

  @Test func officialMessagesDecodeIt() throws {
    let scratch = TemporaryDirectory()
    defer { scratch.remove() }
    let encoder = OTLPProfilesEncoder(resourceAttributes: [
      ("service.name", .string("orders")), ("process.pid", .int(4242)), ("host.name", .string("box")),
    ])
    let request = encoder.encode([Self.window(start: 1_700_000_000_000_000_000), Self.window(start: 1_700_000_001_000_000_000)])
    let file = scratch.path + "/request.pb"
    try Data(request).write(to: URL(fileURLWithPath: file))
    let decoded = try run("python3", [repositoryRoot + "/Tests/Support/decode_otlp_profiles.py", file])
    try #require(decoded.status == 0, "\(decoded.error)")
    let summary = try #require(try JSONSerialization.jsonObject(with: Data(decoded.output.utf8)) as? [String: Any])

    let resource = summary["resource"] as? [String: Any] ?? [:]
    #expect(resource["service.name"] as? String == "orders")
    #expect((resource["process.pid"] as? NSNumber)?.intValue == 4242)
    #expect(resource["host.name"] as? String == "box")
    #expect((summary["scope"] as? [String: Any])?["name"] as? String == "swift-app-profiler")
    #expect(summary["zero_entries_empty"] as? Bool == true)

    // Two windows × two sample types; the dictionary holds each function once.
    let profiles = summary["profiles"] as? [[String: Any]] ?? []
    #expect(profiles.map { $0["sample_type"] as? String } == ["samples/count", "cpu/nanoseconds", "samples/count", "cpu/nanoseconds"])
    let tables = summary["tables"] as? [String: Int] ?? [:]
    #expect(tables["functions"] == 4, "3 functions and the empty entry: \(tables)")
    #expect(tables["links"] == 2, "one link and the empty entry: \(tables)")
    for profile in profiles {
      let byLeaf = profile["by_leaf"] as? [String: Int] ?? [:]
      let hot = Double(byLeaf["Orders.hot()"] ?? 0)
      let cold = Double(byLeaf["Orders.cold()"] ?? 0)
      #expect(abs(hot / (hot + cold) - 0.75) < 0.001, "\(byLeaf)")
      #expect(profile["period_type"] as? String == "cpu/nanoseconds")
      #expect((profile["period"] as? NSNumber)?.intValue == 10_000_000)
      #expect((profile["duration_nano"] as? NSNumber)?.intValue == 1_000_000_000)
      #expect((profile["profile_id"] as? String)?.count == 32)
      // The span's samples carry its link; route and thread are attributes.
      let links = profile["links"] as? [[String: Any]] ?? []
      #expect(links.count == 1 && links.first?["trace_id"] as? String == Self.trace && links.first?["span_id"] as? String == Self.span)
      #expect(links.first?["leaf"] as? String == "Orders.hot()")
      let attributes = profile["attributes"] as? [String: [String]] ?? [:]
      #expect(attributes["route"] == ["/a", "/b"])
      #expect(attributes["thread.name"] == ["worker"])
      #expect(attributes["trace_id"] == nil, "trace ids are links, not attributes")
      // file:line on every frame.
      let frames = profile["frames"] as? [[String: Any]] ?? []
      let hotFrame = frames.first { $0["name"] as? String == "Orders.hot()" }
      #expect(hotFrame?["file"] as? String == "/src/Orders.swift" && (hotFrame?["line"] as? NSNumber)?.intValue == 12)
      #expect(frames.allSatisfy { $0["mapping"] as? String == "/srv/orders" })
    }
    let starts = profiles.compactMap { ($0["time_unix_nano"] as? NSNumber)?.uint64Value }
    #expect(starts == [1_700_000_000_000_000_000, 1_700_000_000_000_000_000, 1_700_000_001_000_000_000, 1_700_000_001_000_000_000])
  }
}
