import AppProfilerFormats
import Foundation
import Testing

/// A profile type none of the encoders knows — lock waits, `contentions/count`
/// and `delay/nanoseconds` — built by hand: every encoder writes it from its
/// sample types alone, and each real consumer reads it.
@Suite struct NewProfileTypeTests {
  static func lockProfile() -> Profile {
    var profile = Profile(
      mode: Profile.Mode(rawValue: "lock"), engine: "hand-made",
      sampleTypes: [.init("contentions", "count"), .init("delay", "nanoseconds")], defaultSampleType: 1,
      periodType: .init("contentions", "count"), period: 1, startTimeNanoseconds: 1_700_000_000_000_000_000,
      durationNanoseconds: 1_000_000_000)
    profile.mappings = [.init(start: 0x1000, end: 0x9000, fileOffset: 0, path: "/usr/bin/app", buildID: "ab")]
    profile.functions = [
      .init(name: "main", systemName: "main", file: "main.swift", startLine: 1),
      .init(name: "Cache.update()", systemName: "$s3app5CacheC6updateyyF", file: "Cache.swift", startLine: 10),
      .init(name: "pthread_mutex_lock", systemName: "pthread_mutex_lock"),
    ]
    profile.locations = [
      .init(address: 0x1100, mapping: 0, lines: [.init(function: 0, line: 3)]),
      .init(address: 0x1200, mapping: 0, lines: [.init(function: 1, line: 12)]),
      .init(address: 0x1300, mapping: 0, lines: [.init(function: 2)]),
    ]
    profile.stacks = [[2, 1, 0], [1, 0]]
    profile.threads = [
      .init(
        id: 11, name: "worker",
        samples: [
          .init(stack: 0, timestampNanoseconds: 0, values: [3, 9_000_000], labels: ["lock": "cache"]),
          .init(stack: 1, timestampNanoseconds: 5, values: [1, 1_000_000]),
        ])
    ]
    return profile
  }

  @Test func goToolPprofReadsIt() throws {
    let scratch = TemporaryDirectory()
    defer { scratch.remove() }
    let file = scratch.path + "/lock.pb.gz"
    try Data(ProfileFormat.pprof.encode(Self.lockProfile())).write(to: URL(fileURLWithPath: file))
    let delay = try goPprof(["-sample_index=delay", "-top", file], scratch: scratch.path)
    #expect(delay.status == 0, "\(delay.error)")
    #expect(delay.output.contains("Type: delay"), "\(delay.output)")
    #expect(delay.output.contains("pthread_mutex_lock"), "\(delay.output)")
    #expect(delay.output.contains("10ms total"), "\(delay.output)")
    let contentions = try goPprof(["-sample_index=contentions", "-top", file], scratch: scratch.path)
    #expect(contentions.status == 0, "\(contentions.error)")
    #expect(contentions.output.contains("Type: contentions"), "\(contentions.output)")
    let tagged = try goPprof(["-sample_index=contentions", "-tagfocus=lock=cache", "-top", file], scratch: scratch.path)
    // The label is a pprof tag: focusing on it keeps the 3 contentions of that sample.
    #expect(tagged.status == 0, "\(tagged.error)")
    #expect(tagged.output.contains("Showing nodes accounting for 3, 75.00% of 4 total"), "\(tagged.output)")
    let decoded = try PprofDecoder().decode(ProfileFormat.pprof.encode(Self.lockProfile()))
    #expect(decoded.mode.rawValue == "delay")  // the decoder names a foreign kind by its default sample type
    #expect(decoded.sampleTypes == Self.lockProfile().sampleTypes)
    #expect(decoded.threads.flatMap(\.samples).first { $0.labels["lock"] == "cache" } != nil)
  }

  @Test func speedscopeFileValidates() throws {
    let scratch = TemporaryDirectory()
    defer { scratch.remove() }
    let path = scratch.path + "/lock.speedscope.json"
    let bytes = ProfileFormat.speedscope.encode(Self.lockProfile())
    try Data(bytes).write(to: URL(fileURLWithPath: path))
    let check = try run("python3", [repositoryRoot + "/Tests/Support/validate_speedscope.py", path])
    #expect(check.status == 0, "\(check.output)\(check.error)")
    let json = try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
    let profiles = try #require(json["profiles"] as? [[String: Any]])
    #expect(profiles.first?["unit"] as? String == "nanoseconds")
    #expect((profiles.first?["weights"] as? [Int])?.reduce(0, +) == 10_000_000)
    let decoded = try SpeedscopeDecoder().decode(bytes)
    #expect(decoded.sampleTypes == Self.lockProfile().sampleTypes)
    #expect(decoded.totalCount == 4)
  }

  @Test func collapsedCountsContentions() throws {
    let text = String(decoding: ProfileFormat.collapsed.encode(Self.lockProfile()), as: UTF8.self)
    #expect(text == "main;Cache.update() 1\nmain;Cache.update();pthread_mutex_lock 3\n", "\(text)")
  }

  @Test func htmlPageLoadsInChromium() throws {
    let scratch = TemporaryDirectory()
    defer { scratch.remove() }
    let file = scratch.path + "/lock.html"
    try Data(ProfileFormat.html.encode(Self.lockProfile(), title: "lock waits")).write(to: URL(fileURLWithPath: file))
    let page = try chromiumDump("file://" + file, scratch: scratch.path)
    #expect(consoleErrors(page.console).isEmpty, "\(consoleErrors(page.console))")
    #expect(page.dom.contains("data-name=\"pthread_mutex_lock\""), "no block for the lock frame")
    // Both sample types can be chosen as the weight.
    #expect(page.dom.contains(">delay (nanoseconds)<") && page.dom.contains(">contentions (count)<"), "\(page.dom.prefix(3000))")
    let top = TopFunctions(Self.lockProfile())
    #expect(top.unit == "contentions")
    #expect(top.entries.first?.name == "pthread_mutex_lock")
  }
}
