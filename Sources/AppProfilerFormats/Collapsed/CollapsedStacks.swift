/// FlameGraph's collapsed ("folded") stack format, one line per unique
/// stack, root first, then a space and the count:
///
///     main;handle();parse() 12
///
/// Counts are samples (cpu, wall) or bytes (alloc). Names are demangled;
/// `;` inside a name becomes `:` and line breaks become spaces, so every line
/// parses back. Idle wall samples end in an `[idle]` frame. With
/// `threadPrefix`, each stack starts with `name (tid N)`.
public struct CollapsedEncoder: Sendable {
  public var threadPrefix: Bool

  public init(threadPrefix: Bool = false) {
    self.threadPrefix = threadPrefix
  }

  public func encode(_ profile: Profile) -> [UInt8] {
    var counts: [String: Int64] = [:]
    var names: [Int: String] = [:]
    for thread in profile.threads {
      for sample in thread.samples {
        var line = names[sample.stack] ?? TopFunctions.names(profile, sample.stack).map(Self.clean).joined(separator: ";")
        names[sample.stack] = line
        if sample.isIdle { line += ";[idle]" }
        if threadPrefix { line = Self.clean("\(thread.name) (tid \(thread.id))") + ";" + line }
        counts[line, default: 0] += profile.mode == .alloc ? sample.bytes : sample.count
      }
    }
    var text = ""
    for line in counts.keys.sorted() where counts[line]! > 0 {
      text += line + " " + String(counts[line]!) + "\n"
    }
    return Array(text.utf8)
  }

  static func clean(_ name: String) -> String {
    var result = ""
    for character in name {
      switch character {
      case ";": result.append(":")
      case "\n", "\r": result.append(" ")
      default: result.append(character)
      }
    }
    return result
  }
}

/// Reads collapsed stacks into a ``Profile`` (one thread "all"; no addresses).
public struct CollapsedDecoder: Sendable {
  public struct Invalid: Error, CustomStringConvertible, Sendable {
    public var description: String
  }

  public var mode: Profile.Mode
  public var intervalNanoseconds: UInt64

  public init(mode: Profile.Mode = .cpu, intervalNanoseconds: UInt64 = 1_000_000) {
    self.mode = mode
    self.intervalNanoseconds = intervalNanoseconds
  }

  public func decode(_ bytes: [UInt8]) throws(Invalid) -> Profile {
    var profile = Profile(
      mode: mode, engine: "collapsed", intervalNanoseconds: intervalNanoseconds, startTimeNanoseconds: 0,
      durationNanoseconds: 0)
    var functionIndex: [String: Int] = [:]
    var stackIndex: [[Int]: Int] = [:]
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
      let index: Int
      if let existing = stackIndex[stack] {
        index = existing
      } else {
        index = profile.stacks.count
        profile.stacks.append(stack)
        stackIndex[stack] = index
      }
      samples.append(
        .init(stack: index, timestampNanoseconds: 0, count: mode == .alloc ? 1 : count,
              bytes: mode == .alloc ? count : 0, isIdle: idle))
    }
    profile.threads = [.init(id: 0, name: "all", samples: samples)]
    return profile
  }
}
