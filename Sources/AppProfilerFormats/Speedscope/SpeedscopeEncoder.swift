/// Encodes a ``Profile`` as a speedscope file
/// (https://www.speedscope.app/file-format-schema.json).
///
/// - One `sampled` profile per thread, busiest first (non-idle weight, then
///   total weight, then thread id), named `name (tid N)`.
/// - `shared.frames`: one frame per function (name, file, line where known).
///   Unsymbolized locations become `image+0xoffset` frames.
/// - Stacks root first, inlined functions expanded; consecutive identical
///   samples are merged (speedscope draws them the same way).
/// - Weights: nanoseconds for cpu/wall, bytes for alloc.
/// - Idle wall samples get a synthetic leaf frame `[idle]`, so they can be
///   told apart (and are not hidden) in speedscope's views.
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
      /// Alloc mode: estimated objects, parallel to `weights` (bytes).
      var objects: [Int64] = []
    }
    var outputs: [ThreadOutput] = []
    let unitWeight = profile.mode == .alloc ? 1 : profile.intervalNanoseconds
    var stackCache: [Int: [Int]] = [:]
    // Threads in output order, so frame indices are numbered in reading order.
    let sortedThreads = profile.threads.filter { !$0.samples.isEmpty }.sorted {
      ($0.busyCount, $0.totalCount, -$0.id) > ($1.busyCount, $1.totalCount, -$1.id)
    }
    for thread in sortedThreads {
      var output = ThreadOutput(
        name: "\(thread.name) (tid \(thread.id))", stacks: [], weights: [], total: 0)
      var previousKey: (Int, Bool)? = nil
      for sample in thread.samples {
        let weight =
          profile.mode == .alloc ? UInt64(max(sample.bytes, 0)) : UInt64(max(sample.count, 0)) * unitWeight
        if let previousKey, previousKey.0 == sample.stack, previousKey.1 == sample.isIdle {
          output.weights[output.weights.count - 1] += weight
          if profile.mode == .alloc { output.objects[output.objects.count - 1] += sample.count }
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
        if profile.mode == .alloc { output.objects.append(sample.count) }
        output.total += weight
        previousKey = (sample.stack, sample.isIdle)
      }
      outputs.append(output)
    }

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
    writer.field("intervalNanoseconds", profile.intervalNanoseconds)
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
    if profile.mode == .alloc {
      // Estimated objects per sample of each profile (weights are bytes):
      // the HTML viewer's bytes/objects toggle.
      writer.key("objects")
      writer.beginArray()
      for output in outputs {
        writer.beginArray()
        for count in output.objects { writer.integer(count) }
        writer.endArray()
      }
      writer.endArray()
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
      writer.field("unit", profile.mode == .alloc ? "bytes" : "nanoseconds")
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
