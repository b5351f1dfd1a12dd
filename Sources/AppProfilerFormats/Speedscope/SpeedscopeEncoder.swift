/// Encodes a ``Profile`` as a speedscope file
/// (https://www.speedscope.app/file-format-schema.json).
///
/// - One `sampled` profile per thread, busiest first (non-idle weight, then
///   total weight, then thread id), named `name (tid N)`.
/// - `shared.frames`: one frame per function (name, file, line where known:
///   the function's start line, which profiles of this process set to the
///   lowest line of the function they sampled).
///   Unsymbolized locations become `image+0xoffset` frames.
/// - Stacks root first, inlined functions expanded; consecutive identical
///   samples are merged (speedscope draws them the same way).
/// - Weights: the values of the default sample type, in its unit (`nanoseconds`
///   for cpu/wall, `bytes` for alloc; `count` becomes speedscope's `none`).
///   The values of the other sample types go to `x-app-profiler.values`
///   (`{type: [[per sample of each profile]]}`), with the sample types and
///   period, so `convert` reads the file back whole and the HTML viewer can
///   switch between them.
/// - Idle wall samples get a synthetic leaf frame `[idle]`, so they can be
///   told apart (and are not hidden) in speedscope's views.
/// - Labels (speedscope has none per sample) go to `x-app-profiler.labels`:
///   `sets` (distinct label sets, `sets[0]` = none) and `samples` (per
///   profile, per sample, an index into `sets`), for the HTML viewer's
///   label selector and for reading the file back.
public struct SpeedscopeEncoder: Sendable {
  /// Name of the profile group shown by speedscope; nil uses a default.
  public var name: String?

  public init(name: String? = nil) {
    self.name = name
  }

  public func encode(_ profile: Profile) -> [UInt8] {
    var frames = FrameTable(profile: profile)
    var writer = JSONWriter(reservingCapacity: 1 << 20)

    // Build the per-thread stacks first, so every frame is known before
    // shared.frames is written.
    struct ThreadOutput {
      var name: String
      var stacks: [[Int]]
      var weights: [UInt64]
      var total: UInt64
      /// The other sample types' values, parallel to `weights`.
      var others: [[Int64]]
      /// Index into `labelSets` per sample.
      var labels: [Int] = []
    }
    var labelSets: [[String: String]] = [[:]]
    var labelSetIndex: [[String: String]: Int] = [[:]: 0]
    var outputs: [ThreadOutput] = []
    let weightIndex = profile.defaultSampleType
    let otherTypes = profile.sampleTypes.indices.filter { $0 != weightIndex }
    var stackCache: [Int: [Int]] = [:]
    // Threads in output order, so frame indices are numbered in reading order.
    let sortedThreads = profile.threads.filter { !$0.samples.isEmpty }.sorted {
      (profile.busyCount(of: $0), profile.totalCount(of: $0), -$0.id) > (profile.busyCount(of: $1), profile.totalCount(of: $1), -$1.id)
    }
    for thread in sortedThreads {
      var output = ThreadOutput(
        name: "\(thread.name) (tid \(thread.id))", stacks: [], weights: [], total: 0,
        others: otherTypes.map { _ in [] })
      var previousKey: (Int, Bool, Int)? = nil
      for sample in thread.samples {
        let weight = UInt64(max(profile.defaultValue(sample), 0))
        func other(_ position: Int) -> Int64 {
          otherTypes[position] < sample.values.count ? sample.values[otherTypes[position]] : 0
        }
        let labels: Int
        if let known = labelSetIndex[sample.labels] {
          labels = known
        } else {
          labels = labelSets.count
          labelSets.append(sample.labels)
          labelSetIndex[sample.labels] = labels
        }
        if let previousKey, previousKey.0 == sample.stack, previousKey.1 == sample.isIdle, previousKey.2 == labels {
          output.weights[output.weights.count - 1] += weight
          for position in otherTypes.indices { output.others[position][output.others[position].count - 1] += other(position) }
          output.total += weight
          continue
        }
        var stack: [Int]
        if let cached = stackCache[sample.stack] {
          stack = cached
        } else {
          stack = frames.framesOfStack(sample.stack)
          stackCache[sample.stack] = stack
        }
        if sample.isIdle { stack.append(frames.idleFrame()) }
        output.stacks.append(stack)
        output.weights.append(weight)
        for position in otherTypes.indices { output.others[position].append(other(position)) }
        output.labels.append(labels)
        output.total += weight
        previousKey = (sample.stack, sample.isIdle, labels)
      }
      outputs.append(output)
    }
    let weightUnit = profile.sampleTypes.indices.contains(weightIndex) ? profile.sampleTypes[weightIndex].unit : "none"

    writer.beginObject()
    writer.field("$schema", "https://www.speedscope.app/file-format-schema.json")
    writer.field("exporter", AppProfilerVersion.exporter)
    writer.field("name", name ?? "\(profile.mode.rawValue) profile (\(profile.engine))")
    writer.field("activeProfileIndex", 0)
    // Ours, ignored by speedscope: lets `app-profiler convert` read the file
    // back without guessing the mode and interval.
    writer.key("x-app-profiler")
    writer.beginObject()
    writer.field("mode", profile.mode.rawValue)
    writer.field("engine", profile.engine)
    writer.key("sampleTypes")
    writer.beginArray()
    for type in profile.sampleTypes {
      writer.beginObject()
      writer.field("type", type.type)
      writer.field("unit", type.unit)
      writer.endObject()
    }
    writer.endArray()
    writer.field("defaultSampleType", profile.defaultSampleType)
    writer.key("periodType")
    writer.beginObject()
    writer.field("type", profile.periodType.type)
    writer.field("unit", profile.periodType.unit)
    writer.endObject()
    writer.field("period", Int(profile.period))
    writer.field("startTimeNanoseconds", profile.startTimeNanoseconds)
    writer.field("durationNanoseconds", profile.durationNanoseconds)
    if let pending = profile.metadata["source_locations_pending"].flatMap({ Int($0) }) {
      // Addresses named by their ELF symbol only: file:line and inlined
      // frames did not fit the symbolication budget.
      writer.field("sourceLocationsPending", pending)
    }
    if profile.statistics.threadsNotSampled > 0 {
      // Threads the sampler could not reach (signal blocked, table full).
      writer.field("threadsNotSampled", Int(profile.statistics.threadsNotSampled))
      if let names = profile.metadata["threads_not_sampled"] { writer.field("threadsNotSampledNames", names) }
    }
    // The other sample types, per profile, per sample.
    writer.key("values")
    writer.beginObject()
    for (position, typeIndex) in otherTypes.enumerated() {
      writer.key(profile.sampleTypes[typeIndex].type)
      writer.beginArray()
      for output in outputs {
        writer.beginArray()
        for value in output.others[position] { writer.integer(value) }
        writer.endArray()
      }
      writer.endArray()
    }
    writer.endObject()
    if labelSets.count > 1 {
      writer.key("labels")
      writer.beginObject()
      writer.key("sets")
      writer.beginArray()
      for set in labelSets {
        writer.beginObject()
        for key in set.keys.sorted() { writer.field(key, set[key]!) }
        writer.endObject()
      }
      writer.endArray()
      writer.key("samples")
      writer.beginArray()
      for output in outputs {
        writer.beginArray()
        for index in output.labels { writer.integer(Int64(index)) }
        writer.endArray()
      }
      writer.endArray()
      writer.endObject()
    }
    writer.endObject()
    writer.key("shared")
    writer.beginObject()
    writer.key("frames")
    writer.beginArray()
    for frame in frames.frames {
      writer.beginObject()
      writer.field("name", frame.name)
      if !frame.file.isEmpty { writer.field("file", frame.file) }
      if frame.line > 0 { writer.field("line", frame.line) }
      writer.endObject()
    }
    writer.endArray()
    writer.endObject()
    writer.key("profiles")
    writer.beginArray()
    for output in outputs {
      writer.beginObject()
      writer.field("type", "sampled")
      writer.field("name", output.name)
      writer.field("unit", Self.speedscopeUnit(weightUnit))
      writer.field("startValue", 0)
      writer.field("endValue", output.total)
      writer.key("samples")
      writer.beginArray()
      for stack in output.stacks {
        writer.beginArray()
        for frame in stack { writer.integer(frame) }
        writer.endArray()
      }
      writer.endArray()
      writer.key("weights")
      writer.beginArray()
      for weight in output.weights { writer.integer(weight) }
      writer.endArray()
      writer.endObject()
    }
    writer.endArray()
    writer.endObject()
    return writer.bytes
  }

  /// speedscope's units: none, nanoseconds, microseconds, milliseconds,
  /// seconds, bytes. pprof's `count` (and anything unknown) is `none`.
  static func speedscopeUnit(_ unit: String) -> String {
    ["nanoseconds", "microseconds", "milliseconds", "seconds", "bytes"].contains(unit) ? unit : "none"
  }
}

/// speedscope frames: one per function, one per unsymbolized location.
private struct FrameTable {
  struct Frame {
    var name: String
    var file: String
    var line: Int
  }

  let profile: Profile
  var frames: [Frame] = []
  private var byFunction: [Int: Int] = [:]
  private var byBareLocation: [Int: Int] = [:]
  private var idle: Int?

  init(profile: Profile) {
    self.profile = profile
  }

  mutating func frameOfFunction(_ index: Int) -> Int {
    if let existing = byFunction[index] { return existing }
    let function = profile.functions[index]
    frames.append(Frame(name: function.name, file: function.file, line: function.startLine))
    byFunction[index] = frames.count - 1
    return frames.count - 1
  }

  mutating func framesOfStack(_ stackIndex: Int) -> [Int] {
    var result: [Int] = []
    for locationIndex in profile.stacks[stackIndex].reversed() {
      let location = profile.locations[locationIndex]
      if location.lines.isEmpty {
        if let existing = byBareLocation[locationIndex] {
          result.append(existing)
        } else {
          frames.append(Frame(name: profile.fallbackName(for: location), file: "", line: 0))
          byBareLocation[locationIndex] = frames.count - 1
          result.append(frames.count - 1)
        }
        continue
      }
      for line in location.lines.reversed() {
        result.append(frameOfFunction(line.function))
      }
    }
    return result
  }

  mutating func idleFrame() -> Int {
    if let idle { return idle }
    frames.append(Frame(name: "[idle]", file: "", line: 0))
    idle = frames.count - 1
    return frames.count - 1
  }
}
