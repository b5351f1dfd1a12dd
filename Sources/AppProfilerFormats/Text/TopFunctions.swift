/// The hottest functions of a profile, like `go tool pprof -top`:
/// *self* counts samples where the function is the leaf, *total* counts
/// samples where it appears anywhere on the stack (once per sample, however
/// often it recurses).
public struct TopFunctions: Sendable {
  public struct Entry: Sendable, Hashable {
    public var name: String
    public var selfCount: Int64
    public var totalCount: Int64
  }

  /// What to do with wall samples of blocked threads.
  public enum IdleSamples: String, Sendable, CaseIterable {
    case include
    case exclude
  }

  public private(set) var entries: [Entry]
  /// Sum of the counts considered.
  public private(set) var total: Int64
  public let unit: String
  private let nanosecondsPerCount: UInt64

  /// - Parameters:
  ///   - thread: only this thread id; nil for all threads.
  ///   - idle: wall profiles only; `.exclude` leaves out samples of blocked threads.
  public init(_ profile: Profile, thread: Int32? = nil, idle: IdleSamples = .include) {
    var selfCounts: [String: Int64] = [:]
    var totalCounts: [String: Int64] = [:]
    var total: Int64 = 0
    var namesOfStack: [Int: [String]] = [:]
    for threadSamples in profile.threads where thread == nil || threadSamples.id == thread {
      for sample in threadSamples.samples {
        if idle == .exclude && sample.isIdle { continue }
        let weight = profile.mode == .alloc ? sample.bytes : sample.count
        total += weight
        let names = namesOfStack[sample.stack] ?? Self.names(profile, sample.stack)
        namesOfStack[sample.stack] = names
        if let leaf = names.last { selfCounts[leaf, default: 0] += weight }
        for name in Set(names) { totalCounts[name, default: 0] += weight }
      }
    }
    entries = totalCounts.map { Entry(name: $0.key, selfCount: selfCounts[$0.key] ?? 0, totalCount: $0.value) }
      .sorted { ($0.selfCount, $0.totalCount, $1.name) > ($1.selfCount, $1.totalCount, $0.name) }
    self.total = total
    self.unit = profile.mode == .alloc ? "bytes" : "samples"
    self.nanosecondsPerCount = profile.intervalNanoseconds
  }

  /// Names of a stack root first; unsymbolized frames as `image+0xoffset`.
  static func names(_ profile: Profile, _ stack: Int) -> [String] {
    var result: [String] = []
    for locationIndex in profile.stacks[stack].reversed() {
      let location = profile.locations[locationIndex]
      if location.lines.isEmpty {
        result.append(profile.fallbackName(for: location))
      } else {
        for line in location.lines.reversed() { result.append(profile.functions[line.function].name) }
      }
    }
    return result
  }

  /// A text table of the first `limit` entries.
  public func render(limit: Int = 20) -> String {
    func percent(_ value: Int64) -> String {
      guard total > 0 else { return "  0.0%" }
      let tenths = (value * 1000 + total / 2) / total
      let text = "\(tenths / 10).\(tenths % 10)%"
      return String(repeating: " ", count: max(0, 6 - text.count)) + text
    }
    func pad(_ value: Int64, _ width: Int) -> String {
      let text = String(value)
      return String(repeating: " ", count: max(0, width - text.count)) + text
    }
    var lines = ["  self%   total%  \(unit == "bytes" ? "   self bytes" : " self samples")  function"]
    for entry in entries.prefix(limit) {
      lines.append("  \(percent(entry.selfCount))   \(percent(entry.totalCount))  \(pad(entry.selfCount, 13))  \(entry.name)")
    }
    return lines.joined(separator: "\n")
  }
}
