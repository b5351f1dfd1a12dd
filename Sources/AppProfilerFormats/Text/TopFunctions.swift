/// The hottest functions of a profile, like `go tool pprof -top`:
/// *self* counts samples where the function is the leaf, *total* counts
/// samples where it appears anywhere on the stack (once per sample, however
/// often it recurses). The counted value is the default sample type's, or
/// the event count where that is a time (cpu and wall count samples); with
/// bytes (alloc) the event count comes alongside (objects), *self* goes to
/// the function that called the allocator, and the allocated Swift types
/// (the leaf frames naming them) are listed apart in ``types``.
public struct TopFunctions: Sendable {
  public struct Entry: Sendable, Hashable {
    public var name: String
    public var selfCount: Int64
    public var totalCount: Int64
    /// The event count alongside a bytes value (objects), self / anywhere.
    public var selfObjects: Int64 = 0
    public var totalObjects: Int64 = 0
    /// Task wall profiles: the part of `totalCount` in samples of tasks on
    /// no thread (leaf `[suspended…]` or `[enqueued]`), the rest on CPU or
    /// blocked on a thread.
    public var totalWaiting: Int64 = 0
  }

  /// A leaf that marks a task's time off threads (docs/tasks.md).
  static func isWaitingMarker(_ name: String) -> Bool { name.hasPrefix("[suspended") || name == "[enqueued]" }

  /// Alloc mode: an allocated Swift type.
  public struct TypeEntry: Sendable, Hashable {
    public var name: String
    public var bytes: Int64
    public var objects: Int64
  }

  /// What to do with wall samples of blocked threads.
  public enum IdleSamples: String, Sendable, CaseIterable {
    case include
    case exclude
  }

  public private(set) var entries: [Entry]
  /// Alloc mode: allocated types, most bytes first.
  public private(set) var types: [TypeEntry] = []
  /// Sum of the counts considered.
  public private(set) var total: Int64
  /// What is counted: `samples` (the count type's name), or a unit (`bytes`).
  public let unit: String

  /// - Parameters:
  ///   - thread: only this thread id; nil for all threads.
  ///   - idle: wall profiles only; `.exclude` leaves out samples of blocked threads.
  ///   - sampleType: the sample type to count (`inuse_space`, `alloc_objects`);
  ///     nil for the default one. Must be one of the profile's.
  public init(_ profile: Profile, thread: Int32? = nil, idle: IdleSamples = .include, sampleType: String? = nil) {
    var selfCounts: [String: (Int64, Int64)] = [:]
    var totalCounts: [String: (Int64, Int64)] = [:]
    var typeCounts: [String: (Int64, Int64)] = [:]
    var waitingCounts: [String: Int64] = [:]
    var total: Int64 = 0
    var namesOfStack: [Int: (names: [String], type: String?)] = [:]
    let defaultIndex = profile.sampleTypes.indices.contains(profile.defaultSampleType) ? profile.defaultSampleType : 0
    let weightIndex =
      sampleType.flatMap { profile.sampleTypeIndex($0) }
      ?? (profile.sampleTypes.indices.contains(defaultIndex) && profile.sampleTypes[defaultIndex].unit == "nanoseconds"
        ? (profile.countSampleType ?? defaultIndex) : defaultIndex)
    // Objects alongside bytes: inuse_objects with inuse_space (Go's heap
    // profile pairs them by name), else the first count.
    let weightName = profile.sampleTypes.indices.contains(weightIndex) ? profile.sampleTypes[weightIndex].type : ""
    let pairedIndex =
      weightName.hasSuffix("_space") ? profile.sampleTypeIndex(String(weightName.dropLast(6)) + "_objects") : nil
    let secondaryIndex = (pairedIndex ?? profile.countSampleType).flatMap { $0 == weightIndex ? nil : $0 }
    func value(_ sample: Profile.Sample, _ index: Int?) -> Int64 {
      guard let index, index < sample.values.count else { return 0 }
      return sample.values[index]
    }
    for threadSamples in profile.threads where thread == nil || threadSamples.id == thread {
      for sample in threadSamples.samples {
        if idle == .exclude && sample.isIdle { continue }
        let weight = value(sample, weightIndex)
        let objects = value(sample, secondaryIndex)
        total += weight
        let resolved = namesOfStack[sample.stack] ?? Self.namesAndType(profile, sample.stack)
        namesOfStack[sample.stack] = resolved
        if let leaf = resolved.names.last {
          selfCounts[leaf, default: (0, 0)].0 += weight
          selfCounts[leaf, default: (0, 0)].1 += objects
        }
        let waiting = resolved.names.last.map(Self.isWaitingMarker) ?? false
        for name in Set(resolved.names) {
          totalCounts[name, default: (0, 0)].0 += weight
          totalCounts[name, default: (0, 0)].1 += objects
          if waiting { waitingCounts[name, default: 0] += weight }
        }
        if let type = resolved.type {
          typeCounts[type, default: (0, 0)].0 += weight
          typeCounts[type, default: (0, 0)].1 += objects
        }
      }
    }
    entries = totalCounts.map {
      Entry(
        name: $0.key, selfCount: selfCounts[$0.key]?.0 ?? 0, totalCount: $0.value.0,
        selfObjects: selfCounts[$0.key]?.1 ?? 0, totalObjects: $0.value.1, totalWaiting: waitingCounts[$0.key] ?? 0)
    }
    .sorted { ($0.selfCount, $0.totalCount, $1.name) > ($1.selfCount, $1.totalCount, $0.name) }
    types = typeCounts.map { TypeEntry(name: $0.key, bytes: $0.value.0, objects: $0.value.1) }
      .sorted { ($0.bytes, $0.objects, $1.name) > ($1.bytes, $1.objects, $0.name) }
    self.total = total
    let weightType = profile.sampleTypes.indices.contains(weightIndex) ? profile.sampleTypes[weightIndex] : .init("samples", "count")
    self.unit = weightType.unit == "count" ? weightType.type : weightType.unit
  }

  /// Names of a stack root first, without an allocated type's leaf frame,
  /// and that type.
  static func namesAndType(_ profile: Profile, _ stack: Int) -> (names: [String], type: String?) {
    var names = names(profile, stack)
    if let leaf = profile.stacks[stack].first, let line = profile.locations[leaf].lines.first,
      profile.functions[line.function].isAllocatedType
    {
      names.removeLast()
      return (names, profile.functions[line.function].name)
    }
    return (names, nil)
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

  /// How `render` names functions.
  public enum Names: String, Sendable, CaseIterable {
    /// As symbolized: `Module.Type.f(x: Swift.Int) -> Swift.Int`.
    case full
    /// As Swift code writes them: `Type.f(x:)` (``ShortNames``).
    case short
  }

  /// A text table of the first `limit` entries.
  public func render(limit: Int = 20, names: Names = .full) -> String {
    func shown(_ name: String) -> String { names == .short ? ShortNames.short(name) : name }
    func percent(_ value: Int64) -> String {
      guard total > 0 else { return "  0.0%" }
      let tenths = (value * 1000 + total / 2) / total
      let text = "\(tenths / 10).\(tenths % 10)%"
      return String(repeating: " ", count: max(0, 6 - text.count)) + text
    }
    func pad(_ value: Int64, _ width: Int) -> String { pad(String(value), width) }
    func pad(_ text: String, _ width: Int) -> String {
      return String(repeating: " ", count: max(0, width - text.count)) + text
    }
    if unit == "bytes" {
      var lines = ["  self%   total%    self bytes  self objects  function (self: called the allocator)"]
      for entry in entries.prefix(limit) {
        lines.append(
          "  \(percent(entry.selfCount))   \(percent(entry.totalCount))  \(pad(Self.bytes(entry.selfCount), 12))  \(pad(entry.selfObjects, 12))  \(shown(entry.name))")
      }
      if !types.isEmpty {
        lines.append("")
        lines.append("  bytes%         bytes       objects  allocated Swift type")
        for type in types.prefix(limit) {
          lines.append("  \(percent(type.bytes))  \(pad(Self.bytes(type.bytes), 12))  \(pad(type.objects, 12))  \(type.name)")
        }
      }
      return lines.joined(separator: "\n")
    }
    if entries.contains(where: { $0.totalWaiting > 0 }) {
      // A task wall profile: how much of each function's total was spent
      // with its task off threads (suspended, enqueued).
      var lines = ["  self%   total%  waiting%   \(pad("self " + unit, 12))  function (waiting: its task on no thread)"]
      for entry in entries.prefix(limit) {
        let waiting = entry.totalCount > 0 ? (entry.totalWaiting * 1000 + entry.totalCount / 2) / entry.totalCount : 0
        lines.append(
          "  \(percent(entry.selfCount))   \(percent(entry.totalCount))  \(pad("\(waiting / 10).\(waiting % 10)%", 8))  \(pad(entry.selfCount, 13))  \(shown(entry.name))")
      }
      return lines.joined(separator: "\n")
    }
    var lines = ["  self%   total%   \(pad("self " + unit, 12))  function"]
    for entry in entries.prefix(limit) {
      lines.append("  \(percent(entry.selfCount))   \(percent(entry.totalCount))  \(pad(entry.selfCount, 13))  \(shown(entry.name))")
    }
    return lines.joined(separator: "\n")
  }

  /// A table of what changed, for a ``Profile/difference(from:)``: signed
  /// values (growth first, then the largest shrinkage), no percentages.
  public func renderDifference(limit: Int = 20, names: Names = .full) -> String {
    func shown(_ name: String) -> String { names == .short ? ShortNames.short(name) : name }
    func signed(_ value: Int64) -> String { value > 0 ? "+\(value)" : "\(value)" }
    func signedBytes(_ value: Int64) -> String { value > 0 ? "+" + Self.bytes(value) : Self.bytes(value) }
    func pad(_ text: String, _ width: Int) -> String { String(repeating: " ", count: max(0, width - text.count)) + text }
    let changed = entries.filter { $0.selfCount != 0 || $0.totalCount != 0 }
    let growing = changed.filter { $0.selfCount > 0 || ($0.selfCount == 0 && $0.totalCount > 0) }
    let shrinking = changed.filter { !growing.contains($0) }.sorted { ($0.selfCount, $0.totalCount) < ($1.selfCount, $1.totalCount) }
    let rows = Array(growing.prefix(limit)) + Array(shrinking.prefix(max(0, limit - min(limit, growing.count))))
    if unit == "bytes" {
      var lines = ["  self Δ bytes  self Δ objects  total Δ bytes  function (self: called the allocator)"]
      for entry in rows {
        lines.append(
          "  \(pad(signedBytes(entry.selfCount), 12))  \(pad(signed(entry.selfObjects), 14))  \(pad(signedBytes(entry.totalCount), 13))  \(shown(entry.name))")
      }
      let changedTypes = types.filter { $0.bytes != 0 }
      if !changedTypes.isEmpty {
        lines.append("")
        lines.append("       Δ bytes     Δ objects  allocated Swift type")
        for type in changedTypes.prefix(limit) {
          lines.append("  \(pad(signedBytes(type.bytes), 12))  \(pad(signed(type.objects), 12))  \(type.name)")
        }
      }
      return lines.joined(separator: "\n")
    }
    var lines = ["  \(pad("self Δ " + unit, 14))  \(pad("total Δ", 12))  function"]
    for entry in rows {
      lines.append("  \(pad(signed(entry.selfCount), 14))  \(pad(signed(entry.totalCount), 12))  \(shown(entry.name))")
    }
    return lines.joined(separator: "\n")
  }

  /// 1536 → "1.5 KiB".
  public static func bytes(_ value: Int64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var amount = Double(value)
    var index = 0
    while abs(amount) >= 1024 && index < units.count - 1 {
      amount /= 1024
      index += 1
    }
    if index == 0 { return "\(value) B" }
    let tenths = (amount * 10).rounded() / 10
    return "\(tenths) \(units[index])"
  }
}
