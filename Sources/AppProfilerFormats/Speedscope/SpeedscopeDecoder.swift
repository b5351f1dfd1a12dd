import FoundationEssentials

/// Reads a speedscope file (sampled profiles) into a ``Profile``.
///
/// Our own files carry `x-app-profiler` (mode, interval, times), so counts
/// come back exactly: count = weight ÷ interval (bytes for alloc). For other
/// exporters each sample counts once and the mode is cpu. Profile names of
/// the form `name (tid N)` give thread ids; a trailing `[idle]` frame marks
/// idle samples. Evented profiles are not supported.
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
    struct Ours: Decodable {
      var mode: String?
      var engine: String?
      var intervalNanoseconds: UInt64?
      var startTimeNanoseconds: UInt64?
      var durationNanoseconds: UInt64?
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
    let mode = file.ours?.mode.flatMap(Profile.Mode.init(rawValue:)) ?? .cpu
    let interval = file.ours?.intervalNanoseconds ?? 0
    var profile = Profile(
      mode: mode, engine: file.ours?.engine ?? "speedscope", intervalNanoseconds: interval,
      startTimeNanoseconds: file.ours?.startTimeNanoseconds ?? 0, durationNanoseconds: file.ours?.durationNanoseconds ?? 0)
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
      for (stack, weight) in zip(samples, weights) {
        var frames = stack
        guard frames.allSatisfy({ $0 >= 0 && $0 < profile.locations.count }) else {
          throw Invalid(description: "profile \(number + 1): frame index out of range")
        }
        let idle = idleFrame != nil && frames.last == idleFrame
        if idle { frames.removeLast() }
        let leafFirst = Array(frames.reversed())
        let index = stacks.intern(leafFirst, in: &profile)
        let value = Int64(weight.rounded())
        let count: Int64
        if mode == .alloc {
          count = 1
        } else if interval > 0 {
          count = max(1, (value + Int64(interval) / 2) / Int64(interval))
        } else {
          count = 1
        }
        thread.samples.append(
          .init(stack: index, timestampNanoseconds: time, count: count, bytes: mode == .alloc ? value : 0, isIdle: idle))
        time += UInt64(max(value, 0))
      }
      profile.threads.append(thread)
    }
    if interval == 0 { profile.intervalNanoseconds = 1 }
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
