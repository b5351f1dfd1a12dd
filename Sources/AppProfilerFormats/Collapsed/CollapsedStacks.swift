/// FlameGraph's collapsed ("folded") stack format, one line per unique
/// stack, root first, then a space and the count:
///
///     main;handle();parse() 12
///
/// The counts are the default sample type's values (bytes for alloc), or,
/// where that is a time (unit nanoseconds), the event counts (samples):
/// FlameGraph's stacks count samples. Names are demangled;
/// `;` inside a name becomes `:` and line breaks become spaces, so every line
/// parses back. Idle wall samples end in an `[idle]` frame. With
/// `threadPrefix`, each stack starts with `name (tid N)`.
public struct CollapsedEncoder: Sendable {
  public var threadPrefix: Bool

  public init(threadPrefix: Bool = false) {
    self.threadPrefix = threadPrefix
  }

  public func encode(_ profile: Profile) -> [UInt8] {
    // Sum per (stack, idle, thread) first, build each line once: hashing a
    // long string per sample would dominate for large profiles.
    struct Key: Hashable {
      var stack: Int
      var idle: Bool
      var thread: Int
    }
    var sums: [Key: Int64] = [:]
    let defaultUnit = profile.sampleTypes.indices.contains(profile.defaultSampleType)
      ? profile.sampleTypes[profile.defaultSampleType].unit : ""
    let countsEvents = defaultUnit == "nanoseconds" && profile.countSampleType != nil
    for (threadIndex, thread) in profile.threads.enumerated() {
      for sample in thread.samples {
        let key = Key(stack: sample.stack, idle: sample.isIdle, thread: threadPrefix ? threadIndex : -1)
        sums[key, default: 0] += countsEvents ? profile.count(sample) : profile.defaultValue(sample)
      }
    }
    // Cleaned names per function, built once; lines as UTF-8 bytes.
    var cleanedFunctions: [Int: [UInt8]] = [:]
    func cleaned(_ function: Int) -> [UInt8] {
      if let existing = cleanedFunctions[function] { return existing }
      let bytes = Self.clean(Array(profile.functions[function].name.utf8))
      cleanedFunctions[function] = bytes
      return bytes
    }
    var stackLines: [Int: [UInt8]] = [:]
    func line(ofStack stack: Int) -> [UInt8] {
      if let existing = stackLines[stack] { return existing }
      var bytes: [UInt8] = []
      for locationIndex in profile.stacks[stack].reversed() {
        let location = profile.locations[locationIndex]
        if location.lines.isEmpty {
          if !bytes.isEmpty { bytes.append(UInt8(ascii: ";")) }
          bytes += Self.clean(Array(profile.fallbackName(for: location).utf8))
        }
        for entry in location.lines.reversed() {
          if !bytes.isEmpty { bytes.append(UInt8(ascii: ";")) }
          bytes += cleaned(entry.function)
        }
      }
      stackLines[stack] = bytes
      return bytes
    }
    var counts: [[UInt8]: Int64] = [:]
    for (key, count) in sums {
      var bytes: [UInt8] = []
      if key.thread >= 0 {
        let thread = profile.threads[key.thread]
        bytes = Self.clean(Array("\(thread.name) (tid \(thread.id))".utf8)) + [UInt8(ascii: ";")]
      }
      bytes += line(ofStack: key.stack)
      if key.idle { bytes += Array(";[idle]".utf8) }
      // Different addresses in the same functions give the same line.
      counts[bytes, default: 0] += count
    }
    var output: [UInt8] = []
    for line in counts.keys.sorted(by: { $0.lexicographicallyPrecedes($1) }) where counts[line]! > 0 {
      output += line
      output.append(UInt8(ascii: " "))
      output += Array(String(counts[line]!).utf8)
      output.append(UInt8(ascii: "\n"))
    }
    return output
  }

  /// `;` becomes `:`, line breaks become spaces (bytes, so it is fast).
  static func clean(_ name: [UInt8]) -> [UInt8] {
    name.map { byte in
      switch byte {
      case UInt8(ascii: ";"): return UInt8(ascii: ":")
      case 0x0A, 0x0D: return UInt8(ascii: " ")
      default: return byte
      }
    }
  }

}

/// Reads collapsed stacks into a ``Profile`` (one thread "all"; no addresses).
public struct CollapsedDecoder: Sendable {
  public struct Invalid: Error, CustomStringConvertible, Sendable {
    public var description: String
  }

  /// The kind's name and what the counts are (one sample type).
  public var mode: Profile.Mode
  public var sampleType: Profile.ValueType

  public init(mode: Profile.Mode = .cpu, sampleType: Profile.ValueType = .init("samples", "count")) {
    self.mode = mode
    self.sampleType = sampleType
  }

  public func decode(_ bytes: [UInt8]) throws(Invalid) -> Profile {
    var profile = Profile(
      mode: mode, engine: "collapsed", sampleTypes: [sampleType], defaultSampleType: 0, periodType: sampleType, period: 1,
      startTimeNanoseconds: 0, durationNanoseconds: 0)
    var functionIndex: [String: Int] = [:]
    var stacks = StackInterner()
    var samples: [Profile.Sample] = []
    for (number, line) in String(decoding: bytes, as: UTF8.self).split(separator: "\n").enumerated() {
      let trimmed = line.hasSuffix("\r") ? line.dropLast() : line[...]
      if trimmed.isEmpty { continue }
      guard let space = trimmed.lastIndex(of: " "), let count = Int64(trimmed[trimmed.index(after: space)...]), count >= 0
      else {
        throw Invalid(description: "line \(number + 1): expected 'frame;frame;… count'")
      }
      var frames = trimmed[..<space].split(separator: ";").map(String.init)
      let idle = frames.last == "[idle]"
      if idle { frames.removeLast() }
      // Leaf first, one location per function.
      let stack = frames.reversed().map { name -> Int in
        if let existing = functionIndex[name] { return existing }
        profile.functions.append(.init(name: name))
        profile.locations.append(.init(address: 0, mapping: nil, lines: [.init(function: profile.functions.count - 1)]))
        functionIndex[name] = profile.locations.count - 1
        return profile.locations.count - 1
      }
      let index = stacks.intern(stack, in: &profile)
      samples.append(.init(stack: index, timestampNanoseconds: 0, values: [count], isIdle: idle))
    }
    profile.threads = [.init(id: 0, name: "all", samples: samples)]
    return profile
  }
}
