import AppProfiler

/// Encoding time and size per format for a synthetic profile: 10,000 unique
/// frames, 100,000 samples on 8 threads, stacks 10–40 deep.
func benchEncode() {
  var generator = SplitMix(seed: 42)
  var profile = Profile(
    mode: .cpu, engine: "synthetic",
    sampleTypes: [Profile.ValueType("samples", "count"), Profile.ValueType("cpu", "nanoseconds")], defaultSampleType: 1,
    periodType: Profile.ValueType("cpu", "nanoseconds"), period: 1_000_000, startTimeNanoseconds: 0,
    durationNanoseconds: 100_000_000_000)
  profile.mappings = [Profile.Mapping(start: 0x10000, end: 0x10000 + 10_000 * 64, fileOffset: 0, path: "/srv/app", buildID: "abcd")]
  for index in 0..<10_000 {
    profile.functions.append(
      Profile.Function(name: "Module.Type\(index % 97).function\(index)(argument: Swift.Int) -> Swift.String",
            systemName: "$s6Module4Type\(index)", file: "/src/File\(index % 300).swift", startLine: index % 500))
    let line = Profile.Line(function: index, line: index % 500 + 3)
    profile.locations.append(Profile.Location(address: 0x10000 + UInt64(index) * 64, mapping: 0, lines: [line]))
  }
  // 20,000 distinct stacks, shared by the samples.
  for _ in 0..<20_000 {
    let depth = 10 + Int(generator.next() % 31)
    profile.stacks.append((0..<depth).map { _ in Int(generator.next() % 10_000) })
  }
  for thread in 0..<8 {
    var samples: [Profile.Sample] = []
    for index in 0..<12_500 {
      let stack = Int(generator.next() % 20_000)
      samples.append(
        Profile.Sample(stack: stack, timestampNanoseconds: UInt64(index) * 1_000_000, values: [1, 1_000_000]))
    }
    profile.threads.append(Profile.ThreadSamples(id: Int32(1000 + thread), name: "worker-\(thread)", samples: samples))
  }
  let encoders: [(String, () -> [UInt8])] = [
    ("speedscope", { SpeedscopeEncoder().encode(profile) }),
    ("pprof", { PprofEncoder().encode(profile) }),
    ("pprof-uncompressed", { PprofEncoder(compressed: false).encode(profile) }),
    ("collapsed", { CollapsedEncoder().encode(profile) }),
    ("html", { HTMLFlameGraphEncoder().encode(profile) }),
  ]
  for (name, encode) in encoders {
    var times: [Double] = []
    var size = 0
    for _ in 0..<3 {
      let start = now()
      size = encode().count
      times.append(Double(now() - start) / 1e6)
    }
    times.sort()
    print("encode \(name) median=\(format(times[1]))ms size=\(format(Double(size) / 1_048_576, 2))MiB")
  }
}

struct SplitMix {
  var state: UInt64
  init(seed: UInt64) { state = seed }
  mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
}
