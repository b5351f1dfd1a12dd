/// Encodes a ``Profile`` as a pprof profile (google/pprof `proto/profile.proto`,
/// `perftools.profiles.Profile`), gzip-compressed: what `go tool pprof`,
/// Grafana Pyroscope/Alloy and Parca read.
///
/// - Sample types, period type, period and default sample type are the
///   profile's own (``Profile/sampleTypes``): cpu `samples/count` +
///   `cpu/nanoseconds` (period `cpu/nanoseconds`); wall the same with
///   `wall`; alloc Go's `alloc_objects/count` + `alloc_space/bytes` (estimates
///   scaled by the sampling probability) + `samples/count` (the sampled
///   allocations behind them), period `space/bytes` = the sampling rate.
///   Allocated Swift types are leaf frames (function system name `$type`).
/// - Ids are sequential from 1 (Parca rejects anything else); `string_table[0]`
///   is "". The executable's mapping comes first.
/// - `has_functions`/`has_filenames`/`has_line_numbers`/`has_inline_frames` say
///   what is really there, so pprof symbolizes locally only what is missing
///   and never asks a `/symbol` endpoint.
/// - Samples with the same stack, thread and idle flag are merged; each has
///   labels `thread` (name) and `thread_id` (num), plus `idle=true` for wall
///   samples of blocked threads (`go tool pprof -tagignore idle=true`).
public struct PprofEncoder: Sendable {
  /// gzip the output (what every consumer expects). False for tests.
  public var compressed: Bool

  public init(compressed: Bool = true) {
    self.compressed = compressed
  }

  public func encode(_ profile: Profile) -> [UInt8] {
    var strings = StringTable()
    var out = ProtobufWriter()

    for type in profile.sampleTypes {
      let (name, unit) = (strings[type.type], strings[type.unit])
      out.message(1) { $0.int(1, name); $0.int(2, unit) }
    }

    // Samples, merged by (thread, stack, idle, labels), in a deterministic order.
    struct Key: Hashable, Comparable {
      var thread: Int32
      var stack: Int
      var idle: Bool
      var labels: [String]
      var numericLabels: [String]
      static func < (a: Key, b: Key) -> Bool {
        if (a.thread, a.stack, a.idle ? 1 : 0) != (b.thread, b.stack, b.idle ? 1 : 0) {
          return (a.thread, a.stack, a.idle ? 1 : 0) < (b.thread, b.stack, b.idle ? 1 : 0)
        }
        if a.labels != b.labels { return a.labels.lexicographicallyPrecedes(b.labels) }
        return a.numericLabels.lexicographicallyPrecedes(b.numericLabels)
      }
    }
    var merged: [Key: [Int64]] = [:]
    var threadNames: [Int32: String] = [:]
    let typeCount = profile.sampleTypes.count
    for thread in profile.threads {
      threadNames[thread.id] = thread.name
      for sample in thread.samples {
        let key = Key(
          thread: thread.id, stack: sample.stack, idle: sample.isIdle,
          labels: sample.labels.sorted { $0.key < $1.key }.flatMap { [$0.key, $0.value] },
          numericLabels: sample.numericLabels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" })
        var sums = merged[key] ?? [Int64](repeating: 0, count: typeCount)
        for index in 0..<min(typeCount, sample.values.count) { sums[index] += sample.values[index] }
        merged[key] = sums
      }
    }
    let threadKey = strings["thread"]
    let threadIDKey = strings["thread_id"]
    let idleKey = strings["idle"]
    let trueValue = strings["true"]
    for key in merged.keys.sorted() {
      let values = merged[key]!
      let name = strings[threadNames[key.thread] ?? ""]
      var stringLabels: [(Int64, Int64)] = []
      for pair in stride(from: 0, to: key.labels.count, by: 2) {
        stringLabels.append((strings[key.labels[pair]], strings[key.labels[pair + 1]]))
      }
      var numberLabels: [(Int64, Int64)] = []
      for text in key.numericLabels {
        let parts = text.split(separator: "=", maxSplits: 1)
        numberLabels.append((strings[String(parts[0])], Int64(parts.count > 1 ? String(parts[1]) : "") ?? 0))
      }
      out.message(2) { sample in
        sample.packed(1, profile.stacks[key.stack].map { UInt64($0 + 1) })
        sample.packed(2, values.map { UInt64(bitPattern: $0) })
        sample.message(3) { $0.int(1, threadKey); $0.int(2, name) }
        sample.message(3) { $0.int(1, threadIDKey); $0.int(3, Int64(key.thread)) }
        if key.idle { sample.message(3) { $0.int(1, idleKey); $0.int(2, trueValue) } }
        for (labelKey, value) in stringLabels { sample.message(3) { $0.int(1, labelKey); $0.int(2, value) } }
        for (labelKey, value) in numberLabels { sample.message(3) { $0.int(1, labelKey); $0.int(3, value) } }
      }
    }

    // Mappings: the executable first, then by address; ids from 1.
    let executable = profile.metadata["executable"]
    let mappingOrder = profile.mappings.indices.sorted {
      let a = profile.mappings[$0]
      let b = profile.mappings[$1]
      if (a.path == executable) != (b.path == executable) { return a.path == executable }
      return a.start < b.start
    }
    var mappingID: [Int: UInt64] = [:]
    for (position, index) in mappingOrder.enumerated() { mappingID[index] = UInt64(position + 1) }
    var flags = [(functions: Bool, files: Bool, lines: Bool, inline: Bool)](
      repeating: (true, true, true, true), count: profile.mappings.count)
    var anyLocation = [Bool](repeating: false, count: profile.mappings.count)
    for location in profile.locations {
      guard let mapping = location.mapping else { continue }
      anyLocation[mapping] = true
      if location.lines.isEmpty { flags[mapping].functions = false }
      if location.lines.contains(where: { profile.functions[$0.function].file.isEmpty }) { flags[mapping].files = false }
      if location.lines.isEmpty || location.lines.contains(where: { $0.line <= 0 }) { flags[mapping].lines = false }
    }
    for index in profile.mappings.indices where !anyLocation[index] {
      flags[index] = (false, false, false, false)
    }
    for index in mappingOrder {
      let mapping = profile.mappings[index]
      // Inline frames are only known when line tables were read.
      let lines = flags[index].lines
      let path = strings[mapping.path]
      let buildID = strings[mapping.buildID]
      out.message(3) { m in
        m.uint(1, mappingID[index]!)
        m.uint(2, mapping.start)
        m.uint(3, mapping.end)
        m.uint(4, mapping.fileOffset)
        m.int(5, path)
        m.int(6, buildID)
        m.bool(7, flags[index].functions)
        m.bool(8, flags[index].files)
        m.bool(9, lines)
        m.bool(10, lines && flags[index].inline)
      }
    }

    for (index, location) in profile.locations.enumerated() {
      out.message(4) { l in
        l.uint(1, UInt64(index + 1))
        if let mapping = location.mapping { l.uint(2, mappingID[mapping]!) }
        l.uint(3, location.address)
        for line in location.lines {
          l.message(4) { $0.uint(1, UInt64(line.function + 1)); $0.int(2, Int64(line.line)) }
        }
      }
    }

    for (index, function) in profile.functions.enumerated() {
      let (name, system, file) = (strings[function.name], strings[function.systemName], strings[function.file])
      out.message(5) { f in
        f.uint(1, UInt64(index + 1))
        f.int(2, name)
        f.int(3, system)
        f.int(4, file)
        f.int(5, Int64(function.startLine))
      }
    }

    var commentLines = [
      "engine: \(profile.engine)",
      "exporter: \(AppProfilerVersion.exporter)",
      "dropped samples: \(profile.statistics.droppedSamples)",
      "truncated samples: \(profile.statistics.truncatedSamples)",
    ]
    if profile.statistics.threadsNotSampled > 0 {
      commentLines.append(
        "threads not sampled: \(profile.statistics.threadsNotSampled)"
          + (profile.metadata["threads_not_sampled"].map { " (\($0))" } ?? ""))
    }
    if profile.statistics.threadsSignalBlocked > 0 {
      commentLines.append("threads blocking the sampling signal: \(profile.statistics.threadsSignalBlocked) (shown as [signal blocked])")
    }
    if let pending = profile.metadata["source_locations_pending"] {
      commentLines.append("source locations pending: \(pending) addresses named by ELF symbol only (time budget); complete in the next profile")
    }
    let comments = commentLines.map { strings[$0] }
    let periodType = (strings[profile.periodType.type], strings[profile.periodType.unit])
    let defaultType = profile.sampleTypes.indices.contains(profile.defaultSampleType)
      ? strings[profile.sampleTypes[profile.defaultSampleType].type] : 0

    // The string table last: it is complete only now.
    for string in strings.all { out.string(6, string) }
    out.int(9, Int64(clamping: profile.startTimeNanoseconds))
    out.int(10, Int64(clamping: profile.durationNanoseconds))
    out.message(11) { $0.int(1, periodType.0); $0.int(2, periodType.1) }
    out.int(12, profile.period)
    out.packed(13, comments.map { UInt64(bitPattern: $0) })
    out.int(14, defaultType)
    return compressed ? Gzip.compress(out.bytes) : out.bytes
  }

}

/// pprof's string table: index 0 is "", each string once.
struct StringTable {
  private(set) var all: [String] = [""]
  private var index: [String: Int64] = ["": 0]

  subscript(_ string: String) -> Int64 {
    mutating get {
      if let existing = index[string] { return existing }
      all.append(string)
      index[string] = Int64(all.count - 1)
      return Int64(all.count - 1)
    }
  }
}
