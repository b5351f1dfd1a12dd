@testable import AppProfilerFormats
import Testing

/// A small hand-made profile exercising every encoder rule.
func sampleProfile(mode: Profile.Mode = .wall) -> Profile {
  let time = Profile.ValueType(mode.rawValue, "nanoseconds")
  var profile = Profile(
    mode: mode, engine: "test", sampleTypes: [.init("samples", "count"), time], defaultSampleType: 1,
    periodType: time, period: 1_000_000, startTimeNanoseconds: 0, durationNanoseconds: 10_000_000)
  /// `count` samples of 1 ms each.
  func sample(_ stack: Int, _ time: UInt64, _ count: Int64, idle: Bool = false) -> Profile.Sample {
    .init(stack: stack, timestampNanoseconds: time, values: [count, count * 1_000_000], isIdle: idle)
  }
  profile.mappings = [.init(start: 0x1000, end: 0x9000, fileOffset: 0, path: "/usr/bin/app", buildID: "ab")]
  profile.functions = [
    .init(name: "main", systemName: "main", file: "main.swift", startLine: 3),
    .init(name: "handle()", systemName: "$s3app6handleyyF", file: "app.swift", startLine: 10),
    .init(name: "inlinedHelper()", file: "app.swift", startLine: 20),
  ]
  profile.locations = [
    .init(address: 0x1100, mapping: 0, lines: [.init(function: 0, line: 5)]),
    // handle() with inlinedHelper() inlined into it: innermost first.
    .init(address: 0x1200, mapping: 0, lines: [.init(function: 2, line: 21), .init(function: 1, line: 12)]),
    // No symbol: shows as app+0x300.
    .init(address: 0x1300, mapping: 0, lines: []),
  ]
  profile.stacks = [
    [1, 0],  // leaf first: handle/inlinedHelper <- main
    [2, 0],
  ]
  profile.threads = [
    .init(id: 7, name: "quiet", samples: [sample(1, 0, 1)]),
    .init(
      id: 5, name: "busy",
      samples: [
        sample(0, 0, 1),
        sample(0, 1_000_000, 2),
        sample(1, 3_000_000, 1),
        sample(1, 4_000_000, 3, idle: true),
      ]),
  ]
  return profile
}

@Suite struct SpeedscopeEncoderTests {
  @Test func goldenOutput() {
    let text = String(decoding: SpeedscopeEncoder(name: "golden").encode(sampleProfile()), as: UTF8.self)
    let expected = """
      {"$schema":"https://www.speedscope.app/file-format-schema.json","exporter":"swift-app-profiler@\(AppProfilerVersion.current)",\
      "name":"golden","activeProfileIndex":0,\
      "x-app-profiler":{"mode":"wall","engine":"test",\
      "sampleTypes":[{"type":"samples","unit":"count"},{"type":"wall","unit":"nanoseconds"}],"defaultSampleType":1,\
      "periodType":{"type":"wall","unit":"nanoseconds"},"period":1000000,"startTimeNanoseconds":0,"durationNanoseconds":10000000,\
      "values":{"samples":[[3,1,3],[1]]}},\
      "shared":{"frames":[\
      {"name":"main","file":"main.swift","line":3},{"name":"handle()","file":"app.swift","line":10},\
      {"name":"inlinedHelper()","file":"app.swift","line":20},{"name":"app+0x300"},{"name":"[idle]"}]},\
      "profiles":[\
      {"type":"sampled","name":"busy (tid 5)","unit":"nanoseconds","startValue":0,"endValue":7000000,\
      "samples":[[0,1,2],[0,3],[0,3,4]],"weights":[3000000,1000000,3000000]},\
      {"type":"sampled","name":"quiet (tid 7)","unit":"nanoseconds","startValue":0,"endValue":1000000,\
      "samples":[[0,3]],"weights":[1000000]}]}
      """
    #expect(text == expected)
  }

  @Test func deterministic() {
    let first = SpeedscopeEncoder().encode(sampleProfile())
    let second = SpeedscopeEncoder().encode(sampleProfile())
    #expect(first == second)
  }

  @Test func escapesStrings() {
    var profile = sampleProfile()
    profile.functions[0].name = "quote\" backslash\\ newline\n tab\t \u{01}"
    let text = String(decoding: SpeedscopeEncoder().encode(profile), as: UTF8.self)
    #expect(text.contains(#""name":"quote\" backslash\\ newline\n tab\t \u0001""#))
  }

  @Test func cpuProfilesHaveNoIdleFrame() {
    var profile = sampleProfile(mode: .cpu)
    for thread in profile.threads.indices {
      for sample in profile.threads[thread].samples.indices {
        profile.threads[thread].samples[sample].isIdle = false
      }
    }
    let text = String(decoding: SpeedscopeEncoder().encode(profile), as: UTF8.self)
    #expect(!text.contains("[idle]"))
  }

  @Test func functionsOfStackExpandInlinedFramesRootFirst() {
    let profile = sampleProfile()
    #expect(profile.functionsOfStack(0) == [0, 1, 2])
    #expect(profile.fallbackName(for: profile.locations[2]) == "app+0x300")
  }
}

@Suite struct SpeedscopeDecoderTests {
  @Test func roundTrip() throws {
    let profile = sampleProfile()
    let decoded = try SpeedscopeDecoder().decode(SpeedscopeEncoder().encode(profile))
    #expect(decoded.mode == .wall)
    #expect(decoded.period == 1_000_000 && decoded.periodType == profile.periodType)
    #expect(decoded.sampleTypes == profile.sampleTypes && decoded.defaultSampleType == 1)
    #expect(decoded.totalCount == profile.totalCount)
    for thread in profile.threads {
      let other = try #require(decoded.threads.first { $0.id == thread.id })
      #expect(other.name == thread.name)
      #expect(decoded.totalCount(of: other) == profile.totalCount(of: thread))
      #expect(decoded.busyCount(of: other) == profile.busyCount(of: thread))
    }
    #expect(TopFunctions(decoded).entries.map(\.name).sorted() == TopFunctions(profile).entries.map(\.name).sorted())
    // Files and lines survive.
    #expect(decoded.functions.contains { $0.name == "handle()" && $0.file == "app.swift" && $0.startLine == 10 })
  }

  @Test func threadNames() {
    #expect(SpeedscopeDecoder.threadName("worker (tid 42)", fallback: 1) == ("worker", 42))
    #expect(SpeedscopeDecoder.threadName("a (b) (tid 7)", fallback: 1) == ("a (b)", 7))
    #expect(SpeedscopeDecoder.threadName("plain", fallback: 3) == ("plain", 3))
  }

  @Test func rejectsOtherFiles() {
    #expect(throws: SpeedscopeDecoder.Invalid.self) { try SpeedscopeDecoder().decode(Array("{}".utf8)) }
    #expect(throws: SpeedscopeDecoder.Invalid.self) { try SpeedscopeDecoder().decode(Array("not json".utf8)) }
  }
}
