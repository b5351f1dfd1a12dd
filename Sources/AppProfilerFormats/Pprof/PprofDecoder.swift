/// Reads a pprof profile (gzipped or not) into a ``Profile``, checking what
/// continuous-profiling servers check (Grafana Alloy, Parca): ids sequential
/// from 1, every string index in range, every reference resolving, as many
/// values per sample as sample types. A violation throws, naming it.
///
/// Samples have no timestamps in pprof; threads come from the `thread_id`
/// and `thread` labels (samples without them go to thread 0, "all").
public struct PprofDecoder: Sendable {
  public struct Invalid: Error, CustomStringConvertible, Sendable, Equatable {
    public var description: String
  }

  public init() {}

  public func decode(_ bytes: [UInt8]) throws(Invalid) -> Profile {
    let raw: [UInt8]
    if Gzip.isCompressed(bytes) {
      do { raw = try Gzip.decompress(bytes) } catch { throw Invalid(description: "gzip: \(error)") }
    } else {
      raw = bytes
    }
    do {
      return try parse(raw)
    } catch let error as Invalid {
      throw error
    } catch {
      throw Invalid(description: "malformed protobuf: \(error)")
    }
  }

  private struct RawSample { var locations: [UInt64]; var values: [Int64]; var labels: [(key: Int64, str: Int64, num: Int64)] }
  private struct RawMapping { var id: UInt64; var start: UInt64; var limit: UInt64; var offset: UInt64; var file: Int64; var buildID: Int64 }
  private struct RawLocation { var id: UInt64; var mapping: UInt64; var address: UInt64; var lines: [(function: UInt64, line: Int64)] }
  private struct RawFunction { var id: UInt64; var name: Int64; var system: Int64; var file: Int64; var start: Int64 }

  private func parse(_ raw: [UInt8]) throws -> Profile {
    var sampleTypes: [(Int64, Int64)] = []
    var samples: [RawSample] = []
    var mappings: [RawMapping] = []
    var locations: [RawLocation] = []
    var functions: [RawFunction] = []
    var strings: [String] = []
    var timeNanos: Int64 = 0
    var durationNanos: Int64 = 0
    var periodType: (Int64, Int64) = (0, 0)
    var period: Int64 = 0
    var comments: [Int64] = []
    var defaultSampleType: Int64 = 0

    func int(_ value: ProtobufReader.Value) -> Int64 {
      if case .varint(let number) = value { return Int64(bitPattern: number) }
      return 0
    }
    func uint(_ value: ProtobufReader.Value) -> UInt64 {
      if case .varint(let number) = value { return number }
      return 0
    }
    func fields(_ value: ProtobufReader.Value, _ body: (Int, ProtobufReader.Value) throws -> Void) throws {
      guard case .bytes(let slice) = value else { throw Invalid(description: "expected a message") }
      var reader = ProtobufReader(slice)
      while let (field, value) = try reader.next() { try body(field, value) }
    }

    var reader = ProtobufReader(raw[...])
    while let (field, value) = try reader.next() {
      switch field {
      case 1:
        var type: (Int64, Int64) = (0, 0)
        try fields(value) { f, v in if f == 1 { type.0 = int(v) } else if f == 2 { type.1 = int(v) } }
        sampleTypes.append(type)
      case 2:
        var sample = RawSample(locations: [], values: [], labels: [])
        try fields(value) { f, v in
          switch f {
          case 1: sample.locations += try ProtobufReader.varints(v)
          case 2: sample.values += try ProtobufReader.varints(v).map { Int64(bitPattern: $0) }
          case 3:
            var label: (key: Int64, str: Int64, num: Int64) = (0, 0, 0)
            try fields(v) { lf, lv in
              if lf == 1 { label.key = int(lv) } else if lf == 2 { label.str = int(lv) } else if lf == 3 { label.num = int(lv) }
            }
            sample.labels.append(label)
          default: break
          }
        }
        samples.append(sample)
      case 3:
        var m = RawMapping(id: 0, start: 0, limit: 0, offset: 0, file: 0, buildID: 0)
        try fields(value) { f, v in
          switch f {
          case 1: m.id = uint(v)
          case 2: m.start = uint(v)
          case 3: m.limit = uint(v)
          case 4: m.offset = uint(v)
          case 5: m.file = int(v)
          case 6: m.buildID = int(v)
          default: break
          }
        }
        mappings.append(m)
      case 4:
        var l = RawLocation(id: 0, mapping: 0, address: 0, lines: [])
        try fields(value) { f, v in
          switch f {
          case 1: l.id = uint(v)
          case 2: l.mapping = uint(v)
          case 3: l.address = uint(v)
          case 4:
            var line: (function: UInt64, line: Int64) = (0, 0)
            try fields(v) { lf, lv in if lf == 1 { line.function = uint(lv) } else if lf == 2 { line.line = int(lv) } }
            l.lines.append(line)
          default: break
          }
        }
        locations.append(l)
      case 5:
        var fn = RawFunction(id: 0, name: 0, system: 0, file: 0, start: 0)
        try fields(value) { f, v in
          switch f {
          case 1: fn.id = uint(v)
          case 2: fn.name = int(v)
          case 3: fn.system = int(v)
          case 4: fn.file = int(v)
          case 5: fn.start = int(v)
          default: break
          }
        }
        functions.append(fn)
      case 6:
        guard case .bytes(let slice) = value else { throw Invalid(description: "string_table entry is not bytes") }
        strings.append(String(decoding: slice, as: UTF8.self))
      case 9: timeNanos = int(value)
      case 10: durationNanos = int(value)
      case 11: try fields(value) { f, v in if f == 1 { periodType.0 = int(v) } else if f == 2 { periodType.1 = int(v) } }
      case 12: period = int(value)
      case 13: comments += try ProtobufReader.varints(value).map { Int64(bitPattern: $0) }
      case 14: defaultSampleType = int(value)
      default: break
      }
    }

    // What Alloy and Parca insist on.
    guard strings.first == "" else { throw Invalid(description: "string_table[0] must be \"\"") }
    func string(_ index: Int64, _ what: String) throws -> String {
      guard index >= 0 && index < strings.count else {
        throw Invalid(description: "\(what): string index \(index) out of range (\(strings.count) strings)")
      }
      return strings[Int(index)]
    }
    func checkSequential(_ ids: [UInt64], _ what: String) throws {
      for (position, id) in ids.enumerated() where id != UInt64(position + 1) {
        throw Invalid(description: "\(what) ids must be 1, 2, 3, …: found \(id) at position \(position + 1)")
      }
    }
    try checkSequential(mappings.map(\.id), "mapping")
    try checkSequential(locations.map(\.id), "location")
    try checkSequential(functions.map(\.id), "function")
    guard !sampleTypes.isEmpty else { throw Invalid(description: "no sample_type") }
    let typeNames = try sampleTypes.map { (try string($0.0, "sample_type"), try string($0.1, "sample_type unit")) }

    let periodTypeNames = (try string(periodType.0, "period_type"), try string(periodType.1, "period_type unit"))
    let defaultName = defaultSampleType != 0 ? try string(defaultSampleType, "default_sample_type") : ""
    // pprof: the default sample type is the named one, else the last.
    let defaultIndex = typeNames.firstIndex { $0.0 == defaultName } ?? (typeNames.count - 1)
    var profile = Profile(
      mode: Self.mode(sampleType: typeNames[defaultIndex].0), engine: "pprof",
      sampleTypes: typeNames.map { Profile.ValueType($0.0, $0.1) }, defaultSampleType: defaultIndex,
      periodType: Profile.ValueType(periodTypeNames.0, periodTypeNames.1), period: period,
      startTimeNanoseconds: UInt64(max(timeNanos, 0)), durationNanoseconds: UInt64(max(durationNanos, 0)))
    // Our encoder writes "engine: …" as a comment.
    for index in comments {
      let comment = try string(index, "comment")
      if comment.hasPrefix("engine: ") { profile.engine = String(comment.dropFirst("engine: ".count)) }
    }
    for m in mappings {
      profile.mappings.append(
        .init(start: m.start, end: m.limit, fileOffset: m.offset, path: try string(m.file, "mapping filename"),
              buildID: try string(m.buildID, "mapping build_id")))
    }
    for f in functions {
      profile.functions.append(
        .init(name: try string(f.name, "function name"), systemName: try string(f.system, "function system_name"),
              file: try string(f.file, "function filename"), startLine: Int(f.start)))
    }
    for l in locations {
      guard l.mapping <= UInt64(mappings.count) else {
        throw Invalid(description: "location \(l.id) refers to missing mapping \(l.mapping)")
      }
      var lines: [Profile.Line] = []
      for line in l.lines {
        guard line.function >= 1 && line.function <= UInt64(functions.count) else {
          throw Invalid(description: "location \(l.id) refers to missing function \(line.function)")
        }
        lines.append(.init(function: Int(line.function - 1), line: Int(line.line)))
      }
      profile.locations.append(.init(address: l.address, mapping: l.mapping == 0 ? nil : Int(l.mapping - 1), lines: lines))
    }

    var stacks = StackInterner()
    var threads: [Int32: Profile.ThreadSamples] = [:]
    var order: [Int32] = []
    for (number, sample) in samples.enumerated() {
      guard sample.values.count == sampleTypes.count else {
        throw Invalid(description: "sample \(number + 1) has \(sample.values.count) values for \(sampleTypes.count) sample types")
      }
      var stack: [Int] = []
      for id in sample.locations {
        guard id >= 1 && id <= UInt64(locations.count) else {
          throw Invalid(description: "sample \(number + 1) refers to missing location \(id)")
        }
        stack.append(Int(id - 1))
      }
      let index = stacks.intern(stack, in: &profile)
      var tid: Int32 = 0
      var name = "all"
      var idle = false
      var labels: [String: String] = [:]
      var numericLabels: [String: Int64] = [:]
      for label in sample.labels {
        let key = try string(label.key, "label key")
        switch key {
        case "thread_id": tid = Int32(truncatingIfNeeded: label.num)
        case "thread": name = try string(label.str, "label value")
        case "idle": idle = try string(label.str, "label value") == "true"
        default:
          if label.str != 0 { labels[key] = try string(label.str, "label value") } else { numericLabels[key] = label.num }
        }
      }
      if threads[tid] == nil {
        threads[tid] = .init(id: tid, name: name, samples: [])
        order.append(tid)
      }
      threads[tid]!.samples.append(
        .init(stack: index, timestampNanoseconds: 0, values: sample.values, isIdle: idle, labels: labels, numericLabels: numericLabels))
    }
    profile.threads = order.map { threads[$0]! }
    return profile
  }

  /// The kind's name from the default sample type: ours are `cpu`, `wall`,
  /// `alloc_space` and `inuse_space` (Go's allocs and heap); anything else
  /// keeps its own name.
  static func mode(sampleType: String) -> Profile.Mode {
    switch sampleType {
    case "alloc_space": .alloc
    case "inuse_space", "inuse_objects": .heap
    default: Profile.Mode(rawValue: sampleType)
    }
  }
}
