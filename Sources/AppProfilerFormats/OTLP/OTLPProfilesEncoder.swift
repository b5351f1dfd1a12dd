/// Encodes profiles as an OpenTelemetry `ExportProfilesServiceRequest`
/// (`opentelemetry/proto/collector/profiles/v1development`, protobuf, the
/// body of an OTLP/HTTP `POST …/v1development/profiles`).
///
/// - One OTLP `Profile` per sample type of each ``Profile`` (OTLP profiles
///   carry one sample type each): a cpu profile gives `samples/count` and
///   `cpu/nanoseconds`.
/// - One `ProfilesDictionary` for the whole request: strings, mappings,
///   locations, functions, stacks, attributes and links are each stored
///   once, whichever profile uses them; entry 0 of every table is the empty
///   one, as the protocol reserves it.
/// - Sample labels become sample attributes, except `trace_id` and
///   `span_id` (hex, from the middlewares' trace labels), which become the
///   sample's `Link`: a backend jumps from a span to its samples. The thread
///   is the attribute `thread.name` (and `thread.id`).
/// - Functions keep their file and start line, lines their line: a frame
///   shows `file:line` wherever the profile had it.
public struct OTLPProfilesEncoder: Sendable {
  /// A resource or scope attribute's value.
  public enum Value: Sendable, Hashable {
    case string(String)
    case int(Int64)
  }

  /// `service.name`, `process.pid`, `host.name`, … of the process.
  public var resourceAttributes: [(key: String, value: Value)]
  /// The instrumentation scope (this library) and its version.
  public var scopeName: String
  public var scopeVersion: String

  public init(
    resourceAttributes: [(key: String, value: Value)], scopeName: String = "swift-app-profiler",
    scopeVersion: String = AppProfilerVersion.current
  ) {
    self.resourceAttributes = resourceAttributes
    self.scopeName = scopeName
    self.scopeVersion = scopeVersion
  }

  /// The request for `profiles` (uncompressed protobuf; OTLP/HTTP senders
  /// gzip it with `Content-Encoding: gzip`).
  public func encode(_ profiles: [Profile]) -> [UInt8] {
    var dictionary = Dictionary()
    var encoded: [[UInt8]] = []
    for profile in profiles {
      encoded.append(contentsOf: dictionary.profiles(of: profile))
    }
    var request = ProtobufWriter()
    request.message(1) { resourceProfiles in
      resourceProfiles.message(1) { resource in
        for (key, value) in resourceAttributes { resource.message(1) { Self.keyValue(&$0, key, value) } }
      }
      resourceProfiles.message(2) { scopeProfiles in
        scopeProfiles.message(1) { scope in
          scope.string(1, scopeName)
          scope.string(2, scopeVersion)
        }
        for profile in encoded { scopeProfiles.bytesField(2, profile) }
      }
    }
    request.message(2) { dictionary.write(to: &$0) }
    return request.bytes
  }

  /// `KeyValue { key = 1; AnyValue value = 2 }`.
  static func keyValue(_ writer: inout ProtobufWriter, _ key: String, _ value: Value) {
    writer.string(1, key)
    writer.message(2) { Self.anyValue(&$0, value) }
  }

  /// `AnyValue { string_value = 1; int_value = 3 }`.
  static func anyValue(_ writer: inout ProtobufWriter, _ value: Value) {
    switch value {
    case .string(let text): writer.string(1, text)
    case .int(let number): writer.intAlways(3, number)
    }
  }

  /// The request's shared tables; index 0 of each is the empty entry.
  struct Dictionary {
    struct MappingKey: Hashable {
      var start, end, offset: UInt64
      var file: Int64
      var buildID: Int64
    }
    struct LocationKey: Hashable {
      var mapping: Int
      var address: UInt64
      var lines: [[Int]]  // [function index, line]
    }
    struct FunctionKey: Hashable {
      var name, systemName, file: Int64
      var startLine: Int
    }
    struct AttributeKey: Hashable {
      var key: Int64
      var value: Value
    }
    struct LinkKey: Hashable {
      var trace: [UInt8]
      var span: [UInt8]
    }

    var strings = StringTable()
    var mappings: [MappingKey] = [MappingKey(start: 0, end: 0, offset: 0, file: 0, buildID: 0)]
    var mappingIndex: [MappingKey: Int] = [:]
    var locations: [LocationKey] = [LocationKey(mapping: 0, address: 0, lines: [])]
    var locationIndex: [LocationKey: Int] = [:]
    var functions: [FunctionKey] = [FunctionKey(name: 0, systemName: 0, file: 0, startLine: 0)]
    var functionIndex: [FunctionKey: Int] = [:]
    var stacks: [[Int]] = [[]]
    var stackIndex: [[Int]: Int] = [:]
    var attributes: [AttributeKey] = [AttributeKey(key: 0, value: .string(""))]
    var attributeIndex: [AttributeKey: Int] = [:]
    var links: [LinkKey] = [LinkKey(trace: [], span: [])]
    var linkIndex: [LinkKey: Int] = [:]

    static func intern<Key: Hashable>(_ key: Key, _ table: inout [Key], _ index: inout [Key: Int]) -> Int {
      if let existing = index[key] { return existing }
      table.append(key)
      index[key] = table.count - 1
      return table.count - 1
    }

    mutating func attribute(_ key: String, _ value: Value) -> Int {
      let key = AttributeKey(key: strings[key], value: value)
      return Self.intern(key, &attributes, &attributeIndex)
    }

    /// A link from hex trace and span ids; nil when either is not hex of
    /// the right length (16 and 8 bytes).
    mutating func link(trace: String?, span: String?) -> Int? {
      guard let trace = trace.flatMap({ Self.hexBytes($0, count: 16) }),
        let span = span.flatMap({ Self.hexBytes($0, count: 8) })
      else { return nil }
      return Self.intern(LinkKey(trace: trace, span: span), &links, &linkIndex)
    }

    static func hexBytes(_ text: String, count: Int) -> [UInt8]? {
      let digits = Array(text.utf8)
      guard digits.count == count * 2 else { return nil }
      var bytes: [UInt8] = []
      bytes.reserveCapacity(count)
      for index in stride(from: 0, to: digits.count, by: 2) {
        guard let high = hexValue(digits[index]), let low = hexValue(digits[index + 1]) else { return nil }
        bytes.append(high << 4 | low)
      }
      return bytes.allSatisfy({ $0 == 0 }) ? nil : bytes
    }

    static func hexValue(_ digit: UInt8) -> UInt8? {
      switch digit {
      case UInt8(ascii: "0")...UInt8(ascii: "9"): return digit - UInt8(ascii: "0")
      case UInt8(ascii: "a")...UInt8(ascii: "f"): return digit - UInt8(ascii: "a") + 10
      case UInt8(ascii: "A")...UInt8(ascii: "F"): return digit - UInt8(ascii: "A") + 10
      default: return nil
      }
    }

    /// The OTLP profiles (encoded `Profile` messages) of `profile`, one per
    /// sample type, their tables added to the dictionary.
    mutating func profiles(of profile: Profile) -> [[UInt8]] {
      // This profile's indices → the dictionary's.
      var mappingMap: [Int] = []
      for mapping in profile.mappings {
        let buildID = mapping.buildID.isEmpty ? 0 : Int64(attribute("process.executable.build_id.gnu", .string(mapping.buildID)))
        let key = MappingKey(
          start: mapping.start, end: mapping.end, offset: mapping.fileOffset, file: strings[mapping.path], buildID: buildID)
        mappingMap.append(Self.intern(key, &mappings, &mappingIndex))
      }
      var functionMap: [Int] = []
      for function in profile.functions {
        let key = FunctionKey(
          name: strings[function.name], systemName: strings[function.systemName], file: strings[function.file],
          startLine: function.startLine)
        functionMap.append(Self.intern(key, &functions, &functionIndex))
      }
      var locationMap: [Int] = []
      for location in profile.locations {
        let key = LocationKey(
          mapping: location.mapping.map { mappingMap[$0] } ?? 0, address: location.address,
          lines: location.lines.map { [functionMap[$0.function], $0.line] })
        locationMap.append(Self.intern(key, &locations, &locationIndex))
      }
      var stackMap: [Int] = []
      for stack in profile.stacks {
        stackMap.append(Self.intern(stack.map { locationMap[$0] }, &stacks, &stackIndex))
      }

      // Samples merged by (stack, attributes, link), as pprof's encoder does.
      struct SampleKey: Hashable {
        var stack: Int
        var attributes: [Int]
        var link: Int
      }
      var merged: [SampleKey: [Int64]] = [:]
      var order: [SampleKey] = []
      let typeCount = profile.sampleTypes.count
      for thread in profile.threads {
        let threadAttributes = [attribute("thread.name", .string(thread.name)), attribute("thread.id", .int(Int64(thread.id)))]
        for sample in thread.samples {
          var indices = threadAttributes
          for (key, value) in sample.labels.sorted(by: { $0.key < $1.key }) where key != "trace_id" && key != "span_id" {
            indices.append(attribute(key, .string(value)))
          }
          for (key, value) in sample.numericLabels.sorted(by: { $0.key < $1.key }) {
            indices.append(attribute(key, .int(value)))
          }
          if sample.isIdle { indices.append(attribute("idle", .string("true"))) }
          let linked = link(trace: sample.labels["trace_id"], span: sample.labels["span_id"]) ?? 0
          let key = SampleKey(stack: stackMap[sample.stack], attributes: indices, link: linked)
          if merged[key] == nil {
            merged[key] = [Int64](repeating: 0, count: typeCount)
            order.append(key)
          }
          for index in 0..<min(typeCount, sample.values.count) { merged[key]![index] += sample.values[index] }
        }
      }

      let periodType = (strings[profile.periodType.type], strings[profile.periodType.unit])
      var result: [[UInt8]] = []
      for (typeIndex, type) in profile.sampleTypes.enumerated() {
        let sampleType = (strings[type.type], strings[type.unit])
        var out = ProtobufWriter()
        out.message(1) { $0.int(1, sampleType.0); $0.int(2, sampleType.1) }
        for key in order {
          let value = merged[key]![typeIndex]
          guard value != 0 else { continue }
          out.message(2) { sample in
            sample.intAlways(1, Int64(key.stack))
            sample.packed(2, key.attributes.map { UInt64($0) })
            sample.int(3, Int64(key.link))
            sample.packed(4, [UInt64(bitPattern: value)])
          }
        }
        out.fixed64(3, profile.startTimeNanoseconds)
        out.uint(4, profile.durationNanoseconds)
        out.message(5) { $0.int(1, periodType.0); $0.int(2, periodType.1) }
        out.int(6, profile.period)
        out.bytesField(7, Self.profileID())
        result.append(out.bytes)
      }
      return result
    }

    /// 16 random bytes (a profile id must not be all zero).
    static func profileID() -> [UInt8] {
      var generator = SystemRandomNumberGenerator()
      var bytes = (0..<16).map { _ in UInt8.random(in: 0...255, using: &generator) }
      if bytes.allSatisfy({ $0 == 0 }) { bytes[0] = 1 }
      return bytes
    }

    /// `ProfilesDictionary`: the tables, each with its empty entry 0.
    func write(to out: inout ProtobufWriter) {
      for mapping in mappings {
        out.message(1) { m in
          m.uint(1, mapping.start)
          m.uint(2, mapping.end)
          m.uint(3, mapping.offset)
          m.int(4, mapping.file)
          if mapping.buildID != 0 { m.packed(5, [UInt64(mapping.buildID)]) }
        }
      }
      for location in locations {
        out.message(2) { l in
          l.int(1, Int64(location.mapping))
          l.uint(2, location.address)
          for line in location.lines {
            l.message(3) { $0.int(1, Int64(line[0])); $0.int(2, Int64(line[1])) }
          }
        }
      }
      for function in functions {
        out.message(3) { f in
          f.int(1, function.name)
          f.int(2, function.systemName)
          f.int(3, function.file)
          f.int(4, Int64(function.startLine))
        }
      }
      for link in links {
        out.message(4) { l in
          if !link.trace.isEmpty { l.bytesField(1, link.trace) }
          if !link.span.isEmpty { l.bytesField(2, link.span) }
        }
      }
      for string in strings.all { out.string(5, string) }
      for attribute in attributes {
        out.message(6) { a in
          a.int(1, attribute.key)
          if attribute.key != 0 { a.message(2) { OTLPProfilesEncoder.anyValue(&$0, attribute.value) } }
        }
      }
      for stack in stacks {
        out.message(7) { $0.packed(1, stack.map { UInt64($0) }) }
      }
    }
  }
}
