import AppProfilerFormats
import Testing

@Suite struct ProfileMergeTests {
  func profile(start: UInt64, _ samples: [(function: String, thread: Int32, count: Int64)]) -> Profile {
    var profile = Profile(
      mode: .cpu, engine: "test", sampleTypes: [.init("samples", "count"), .init("cpu", "nanoseconds")],
      periodType: .init("cpu", "nanoseconds"), period: 1_000_000, startTimeNanoseconds: start,
      durationNanoseconds: 1_000_000_000)
    for (function, thread, count) in samples {
      let functionIndex = profile.functions.firstIndex { $0.name == function } ?? {
        profile.functions.append(.init(name: function))
        return profile.functions.count - 1
      }()
      profile.locations.append(.init(address: UInt64(profile.locations.count + 1), mapping: nil, lines: [.init(function: functionIndex)]))
      profile.stacks.append([profile.locations.count - 1])
      let sample = Profile.Sample(stack: profile.stacks.count - 1, timestampNanoseconds: 10, values: [count, count * 1_000_000])
      if let index = profile.threads.firstIndex(where: { $0.id == thread }) {
        profile.threads[index].samples.append(sample)
      } else {
        profile.threads.append(.init(id: thread, name: "t\(thread)", samples: [sample]))
      }
    }
    return profile
  }

  @Test func countsAddUpAndTimestampsShift() throws {
    let first = profile(start: 1_000_000_000, [("a", 1, 3), ("b", 2, 1)])
    let second = profile(start: 2_000_000_000, [("a", 1, 2), ("c", 3, 5)])
    let merged = try #require(Profile.merged([first, second]))
    let top = TopFunctions(merged)
    func flat(_ name: String) -> Int64 { top.entries.first { $0.name == name }?.selfCount ?? 0 }
    #expect(flat("a") == 5 && flat("b") == 1 && flat("c") == 5)
    #expect(merged.functions.filter { $0.name == "a" }.count == 1)
    #expect(Set(merged.threads.map(\.id)) == [1, 2, 3])
    #expect(merged.startTimeNanoseconds == 1_000_000_000 && merged.durationNanoseconds == 2_000_000_000)
    let shifted = merged.threads.first { $0.id == 3 }!.samples[0].timestampNanoseconds
    #expect(shifted == 1_000_000_010)
    // Encoders read it: pprof round trip keeps the totals.
    let decoded = try PprofDecoder().decode(PprofEncoder().encode(merged))
    #expect(TopFunctions(decoded).entries.first { $0.name == "c" }?.selfCount == 5)
    #expect(Profile.merged([]) == nil)
  }

  /// `difference`: per function, new minus base (growth first in the
  /// table); `growth`: only the call paths that grew, netted per path.
  @Test func differenceAndGrowth() throws {
    let base = profile(start: 1_000_000_000, [("a", 1, 3), ("b", 2, 4)])
    let new = profile(start: 2_000_000_000, [("a", 1, 10), ("b", 2, 1), ("c", 1, 2)])
    let difference = try #require(new.difference(from: base))
    let top = TopFunctions(difference)
    func delta(_ name: String) -> Int64 { top.entries.first { $0.name == name }?.selfCount ?? 0 }
    #expect(delta("a") == 7 && delta("b") == -3 && delta("c") == 2)
    let table = top.renderDifference(limit: 10)
    let rows = table.split(separator: "\n").dropFirst().map(String.init)
    #expect(rows.first?.hasSuffix(" a") == true && rows.last?.hasSuffix(" b") == true, "\(table)")
    #expect(table.contains("+7") && table.contains("-3"))
    // pprof keeps the negative values.
    let decoded = try PprofDecoder().decode(PprofEncoder().encode(difference))
    #expect(TopFunctions(decoded).entries.first { $0.name == "b" }?.selfCount == -3)
    // Growth: a and c, netted; b (shrank) left out.
    let growth = difference.growth()
    let grown = TopFunctions(growth)
    #expect(grown.entries.map(\.name).sorted() == ["a", "c"])
    #expect(grown.entries.first { $0.name == "a" }?.selfCount == 7)
    // Other sample types: nil.
    var other = base
    other.sampleTypes = [.init("alloc_space", "bytes"), .init("x", "count")]
    #expect(new.difference(from: other) == nil)
  }
}
