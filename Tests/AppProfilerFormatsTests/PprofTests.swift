@testable import AppProfilerFormats
import Testing

@Suite struct PprofTests {
  func profileWithExecutable() -> Profile {
    var profile = sampleProfile(mode: .cpu)
    profile.metadata["executable"] = "/usr/bin/app"
    profile.mappings.insert(.init(start: 0x7000_0000, end: 0x7001_0000, fileOffset: 0, path: "/lib/libc.so.6", buildID: ""), at: 0)
    for index in profile.locations.indices where profile.locations[index].mapping != nil {
      profile.locations[index].mapping! += 1
    }
    return profile
  }

  @Test func roundTrip() throws {
    let profile = profileWithExecutable()
    let bytes = PprofEncoder().encode(profile)
    #expect(Gzip.isCompressed(bytes))
    let decoded = try PprofDecoder().decode(bytes)
    #expect(decoded.mode == .cpu)
    #expect(decoded.period == profile.period && decoded.periodType == profile.periodType)
    #expect(decoded.sampleTypes == profile.sampleTypes && decoded.defaultSampleType == profile.defaultSampleType)
    #expect(decoded.functions.map(\.name) == profile.functions.map(\.name))
    #expect(decoded.functions.map(\.file) == profile.functions.map(\.file))
    #expect(decoded.totalCount == profile.totalCount)
    // Per thread: same totals, same stacks (as names), idle flags kept.
    for thread in profile.threads {
      let other = try #require(decoded.threads.first { $0.id == thread.id })
      #expect(other.name == thread.name)
      #expect(decoded.totalCount(of: other) == profile.totalCount(of: thread))
      #expect(decoded.busyCount(of: other) == profile.busyCount(of: thread))
      let names = Set(thread.samples.map { TopFunctions.names(profile, $0.stack) })
      let decodedNames = Set(other.samples.map { TopFunctions.names(decoded, $0.stack) })
      #expect(names == decodedNames)
    }
    // The executable's mapping comes first.
    #expect(decoded.mappings.first?.path == "/usr/bin/app")
    #expect(decoded.mappings.first?.buildID == "ab")
  }

  @Test func mappingFlagsAreTruthful() throws {
    let raw = try Gzip.decompress(PprofEncoder().encode(profileWithExecutable()))
    var reader = ProtobufReader(raw[...])
    var flags: [[Int: UInt64]] = []
    while let (field, value) = try reader.next() {
      guard field == 3, case .bytes(let slice) = value else { continue }
      var mapping = ProtobufReader(slice)
      var fields: [Int: UInt64] = [:]
      while let (f, v) = try mapping.next() { if case .varint(let n) = v { fields[f] = n } }
      flags.append(fields)
    }
    #expect(flags.count == 2)
    // /usr/bin/app: one location has no symbol → has_functions false.
    #expect(flags[0][7] == nil)
    // libc: no location at all → nothing claimed.
    #expect(flags[1][7] == nil && flags[1][9] == nil)
  }

  @Test func decoderEnforcesWhatScrapersCheck() throws {
    func document(_ build: (inout ProtobufWriter) -> Void) -> [UInt8] {
      var writer = ProtobufWriter()
      writer.message(1) { $0.int(1, 1); $0.int(2, 2) }
      build(&writer)
      writer.string(6, "")
      writer.string(6, "samples")
      writer.string(6, "count")
      return writer.bytes
    }
    let valid = document { w in
      w.message(5) { $0.uint(1, 1); $0.int(2, 1) }
      w.message(4) { l in l.uint(1, 1); l.message(4) { $0.uint(1, 1) } }
      w.message(2) { $0.packed(1, [1]); $0.packed(2, [3]) }
    }
    #expect(try PprofDecoder().decode(valid).totalCount == 3)
    let gappedIDs = document { w in w.message(4) { $0.uint(1, 2) } }
    #expect { try PprofDecoder().decode(gappedIDs) } throws: { "\($0)".contains("ids must be 1, 2, 3") }
    let badString = document { w in w.message(5) { $0.uint(1, 1); $0.int(2, 99) } }
    #expect { try PprofDecoder().decode(badString) } throws: { "\($0)".contains("out of range") }
    let wrongValues = document { w in w.message(2) { $0.packed(2, [1, 2]) } }
    #expect { try PprofDecoder().decode(wrongValues) } throws: { "\($0)".contains("values for 1 sample types") }
    let missingLocation = document { w in w.message(2) { $0.packed(1, [5]); $0.packed(2, [1]) } }
    #expect { try PprofDecoder().decode(missingLocation) } throws: { "\($0)".contains("missing location 5") }
    #expect(throws: PprofDecoder.Invalid.self) { try PprofDecoder().decode([0x1F, 0x8B, 1, 2, 3]) }
  }

  @Test func protobufVarints() throws {
    var writer = ProtobufWriter()
    for value: UInt64 in [0, 1, 127, 128, 300, UInt64.max] { writer.varint(value) }
    var reader = ProtobufReader(writer.bytes[...])
    for value: UInt64 in [0, 1, 127, 128, 300, UInt64.max] { #expect(try reader.varint() == value) }
    #expect(reader.isAtEnd)
  }

  @Test func gzipRoundTrip() throws {
    let input = Array((0..<100_000).map { UInt8(truncatingIfNeeded: $0 * 7 % 13) })
    let compressed = Gzip.compress(input)
    #expect(compressed.count < input.count / 10)
    #expect(try Gzip.decompress(compressed) == input)
  }

  @Test func gzipIntoABufferOfTheExactSize() {
    let input = Array((0..<100_000).map { UInt8(truncatingIfNeeded: $0 * 7 % 13) })
    let compressed = Gzip.compress(input)
    for size in [input.count, input.count - 1, input.count + 1] {
      var output = [UInt8](repeating: 0, count: size)
      let done = compressed.withUnsafeBytes { source in
        output.withUnsafeMutableBytes { Gzip.decompress(source, exactlyInto: $0) }
      }
      #expect(done == (size == input.count), "\(size) bytes")
      if size == input.count { #expect(output == input) }
    }
    var output = [UInt8](repeating: 0, count: input.count)
    let corrupt = Array(compressed.prefix(compressed.count / 2))
    #expect(!corrupt.withUnsafeBytes { source in output.withUnsafeMutableBytes { Gzip.decompress(source, exactlyInto: $0) } })
  }
}
