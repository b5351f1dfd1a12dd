import FoundationEssentials

/// Reads a speedscope file (sampled profiles) into a ``Profile``.
///
/// Our own files carry `x-app-profiler` (the sample types, the default one,
/// the period, and the values of every non-default type per sample), so the
/// profile comes back whole. Files of other exporters get two sample types,
/// `samples/count` (1 per sample) and `weight/<unit>` (the weights). Profile
/// names of the form `name (tid N)` give thread ids; a trailing `[idle]`
/// frame marks idle samples. Evented profiles are not supported.
public struct SpeedscopeDecoder: Sendable {
  public struct Invalid: Error, CustomStringConvertible, Sendable {
    public var description: String
  }

  public init() {}

  private struct File: Decodable {
    struct Shared: Decodable { var frames: [Frame] }
    struct Frame: Decodable {
      var name: String
      var file: String?
      var line: Int?
    }
    struct SampledProfile: Decodable {
      var type: String
      var name: String?
      var unit: String?
      var samples: [[Int]]?
      var weights: [Double]?
    }
    struct ValueType: Decodable {
      var type: String
      var unit: String
    }
    struct Ours: Decodable {
      var mode: String?
      var engine: String?
      var sampleTypes: [ValueType]?
      var defaultSampleType: Int?
      var periodType: ValueType?
      var period: Int64?
      var values: [String: [[Int64]]]?
      var startTimeNanoseconds: UInt64?
      var durationNanoseconds: UInt64?
      var labels: Labels?
    }
    struct Labels: Decodable {
      var sets: [[String: String]]
      var samples: [[Int]]
    }
    var shared: Shared
    var profiles: [SampledProfile]
    var ours: Ours?

    enum CodingKeys: String, CodingKey {
      case shared, profiles
      case ours = "x-app-profiler"
    }
  }

  public func decode(_ bytes: [UInt8]) throws(Invalid) -> Profile {
    let file: File
    do {
      file = try JSONDecoder().decode(File.self, from: Data(bytes))
    } catch {
      throw Invalid(description: "not a speedscope file: \(error)")
    }
    let ours = file.ours
    let foreignUnit = file.profiles.first?.unit ?? "none"
    let sampleTypes =
      ours?.sampleTypes?.map { Profile.ValueType($0.type, $0.unit) }
      ?? [Profile.ValueType("samples", "count"), Profile.ValueType("weight", foreignUnit)]
    let weightIndex = ours?.defaultSampleType ?? (sampleTypes.count - 1)
    guard sampleTypes.indices.contains(weightIndex) else {
      throw Invalid(description: "x-app-profiler.defaultSampleType \(weightIndex) out of range")
    }
    var profile = Profile(
      mode: Profile.Mode(rawValue: ours?.mode ?? "speedscope"), engine: ours?.engine ?? "speedscope",
      sampleTypes: sampleTypes, defaultSampleType: weightIndex,
      periodType: ours?.periodType.map { Profile.ValueType($0.type, $0.unit) } ?? sampleTypes[weightIndex],
      period: ours?.period ?? 1,
      startTimeNanoseconds: ours?.startTimeNanoseconds ?? 0, durationNanoseconds: ours?.durationNanoseconds ?? 0)
    // One function and one location per speedscope frame.
    var idleFrame: Int? = nil
    for (index, frame) in file.shared.frames.enumerated() {
      if frame.name == "[idle]" { idleFrame = index }
      profile.functions.append(.init(name: frame.name, file: frame.file ?? "", startLine: frame.line ?? 0))
      profile.locations.append(.init(address: 0, mapping: nil, lines: [.init(function: index, line: frame.line ?? 0)]))
    }
    var stacks = StackInterner()
    for (number, sampled) in file.profiles.enumerated() {
      guard sampled.type == "sampled" else {
        throw Invalid(description: "profile \(number + 1) is '\(sampled.type)'; only sampled profiles are supported")
      }
      let samples = sampled.samples ?? []
      let weights = sampled.weights ?? []
      guard samples.count == weights.count else {
        throw Invalid(description: "profile \(number + 1): \(samples.count) samples but \(weights.count) weights")
      }
      let (name, tid) = Self.threadName(sampled.name ?? "thread \(number + 1)", fallback: Int32(number + 1))
      var thread = Profile.ThreadSamples(id: tid, name: name, samples: [])
      var time: UInt64 = 0
      for (sampleIndex, (stack, weight)) in zip(samples, weights).enumerated() {
        var frames = stack
        guard frames.allSatisfy({ $0 >= 0 && $0 < profile.locations.count }) else {
          throw Invalid(description: "profile \(number + 1): frame index out of range")
        }
        let idle = idleFrame != nil && frames.last == idleFrame
        if idle { frames.removeLast() }
        let leafFirst = Array(frames.reversed())
        let index = stacks.intern(leafFirst, in: &profile)
        let value = Int64(weight.rounded())
        var values = [Int64](repeating: 0, count: sampleTypes.count)
        values[weightIndex] = value
        for (typeIndex, type) in sampleTypes.enumerated() where typeIndex != weightIndex {
          if let column = ours?.values?[type.type] {
            guard number < column.count, sampleIndex < column[number].count else {
              throw Invalid(description: "x-app-profiler.values.\(type.type) lacks profile \(number + 1) sample \(sampleIndex + 1)")
            }
            values[typeIndex] = column[number][sampleIndex]
          } else if ours == nil && type.type == "samples" {
            values[typeIndex] = 1  // another exporter: each sample once
          }
        }
        var labels: [String: String] = [:]
        if let table = ours?.labels, number < table.samples.count, sampleIndex < table.samples[number].count {
          let set = table.samples[number][sampleIndex]
          if table.sets.indices.contains(set) { labels = table.sets[set] }
        }
        thread.samples.append(.init(stack: index, timestampNanoseconds: time, values: values, isIdle: idle, labels: labels))
        time += UInt64(max(value, 0))
      }
      profile.threads.append(thread)
    }
    return profile
  }

  /// "worker (tid 42)" → ("worker", 42).
  static func threadName(_ text: String, fallback: Int32) -> (String, Int32) {
    let marker = " (tid "
    guard text.hasSuffix(")") else { return (text, fallback) }
    let characters = Array(text)
    let pattern = Array(marker)
    var start = characters.count - pattern.count
    while start >= 0 {
      if Array(characters[start..<(start + pattern.count)]) == pattern { break }
      start -= 1
    }
    guard start >= 0 else { return (text, fallback) }
    let digits = String(characters[(start + pattern.count)..<(characters.count - 1)])
    guard let tid = Int32(digits) else { return (text, fallback) }
    return (String(characters[..<start]), tid)
  }
}
