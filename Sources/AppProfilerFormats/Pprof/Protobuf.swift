/// The protobuf wire format, just what profile.proto and OTLP's profiles
/// need: varints (wire type 0), fixed64 (1), length-delimited fields (2),
/// packed repeated varints.
///
/// Why not SwiftProtobuf: profile.proto is small and frozen, the encoder
/// writes a dozen field kinds, and a generated 2,000-line file plus a runtime
/// dependency would outweigh it. Round-trip tests against our decoder and
/// `go tool pprof` reading the output keep it honest.
struct ProtobufWriter {
  private(set) var bytes: [UInt8] = []

  mutating func varint(_ value: UInt64) {
    var value = value
    while value >= 0x80 {
      bytes.append(UInt8(truncatingIfNeeded: value) | 0x80)
      value >>= 7
    }
    bytes.append(UInt8(value))
  }

  private mutating func tag(_ field: Int, _ wireType: UInt64) {
    varint(UInt64(field) << 3 | wireType)
  }

  /// A varint field; zero is omitted (proto3 default).
  mutating func uint(_ field: Int, _ value: UInt64) {
    guard value != 0 else { return }
    tag(field, 0)
    varint(value)
  }

  mutating func int(_ field: Int, _ value: Int64) {
    uint(field, UInt64(bitPattern: value))
  }

  /// A varint field written even when zero (a oneof member, an index whose
  /// 0 means something).
  mutating func intAlways(_ field: Int, _ value: Int64) {
    tag(field, 0)
    varint(UInt64(bitPattern: value))
  }

  /// A fixed64 field (wire type 1); zero is omitted.
  mutating func fixed64(_ field: Int, _ value: UInt64) {
    guard value != 0 else { return }
    tag(field, 1)
    for shift in stride(from: 0, to: 64, by: 8) { bytes.append(UInt8(truncatingIfNeeded: value >> UInt64(shift))) }
  }

  mutating func bool(_ field: Int, _ value: Bool) {
    uint(field, value ? 1 : 0)
  }

  mutating func bytesField(_ field: Int, _ value: [UInt8]) {
    tag(field, 2)
    varint(UInt64(value.count))
    bytes.append(contentsOf: value)
  }

  mutating func string(_ field: Int, _ value: String) {
    bytesField(field, Array(value.utf8))
  }

  mutating func message(_ field: Int, _ build: (inout ProtobufWriter) -> Void) {
    var nested = ProtobufWriter()
    build(&nested)
    bytesField(field, nested.bytes)
  }

  /// A packed repeated varint field (omitted when empty).
  mutating func packed(_ field: Int, _ values: [UInt64]) {
    guard !values.isEmpty else { return }
    var nested = ProtobufWriter()
    for value in values { nested.varint(value) }
    bytesField(field, nested.bytes)
  }
}

/// Reads fields one by one. Unknown fields are skipped; malformed input throws.
struct ProtobufReader {
  struct Malformed: Error, CustomStringConvertible {
    var description: String
  }

  enum Value {
    case varint(UInt64)
    case bytes(ArraySlice<UInt8>)
    case fixed64(UInt64)
    case fixed32(UInt32)
  }

  private let data: ArraySlice<UInt8>
  private var position: Int

  init(_ data: ArraySlice<UInt8>) {
    self.data = data
    self.position = data.startIndex
  }

  var isAtEnd: Bool { position >= data.endIndex }

  mutating func varint() throws(Malformed) -> UInt64 {
    var result: UInt64 = 0
    var shift: UInt64 = 0
    while true {
      guard position < data.endIndex, shift < 64 else { throw Malformed(description: "truncated varint") }
      let byte = data[position]
      position += 1
      result |= UInt64(byte & 0x7F) << shift
      if byte & 0x80 == 0 { return result }
      shift += 7
    }
  }

  /// The next field number and value, or nil at the end.
  mutating func next() throws(Malformed) -> (field: Int, value: Value)? {
    guard !isAtEnd else { return nil }
    let key = try varint()
    let field = Int(key >> 3)
    guard field > 0 else { throw Malformed(description: "field number 0") }
    switch key & 7 {
    case 0:
      return (field, .varint(try varint()))
    case 1:
      guard position + 8 <= data.endIndex else { throw Malformed(description: "truncated fixed64") }
      var value: UInt64 = 0
      for index in 0..<8 { value |= UInt64(data[position + index]) << (8 * UInt64(index)) }
      position += 8
      return (field, .fixed64(value))
    case 2:
      let length = try varint()
      guard length <= UInt64(data.endIndex - position) else { throw Malformed(description: "length beyond end") }
      let slice = data[position..<(position + Int(length))]
      position += Int(length)
      return (field, .bytes(slice))
    case 5:
      guard position + 4 <= data.endIndex else { throw Malformed(description: "truncated fixed32") }
      var value: UInt32 = 0
      for index in 0..<4 { value |= UInt32(data[position + index]) << (8 * UInt32(index)) }
      position += 4
      return (field, .fixed32(value))
    default:
      throw Malformed(description: "unsupported wire type \(key & 7)")
    }
  }

  /// Values of a repeated varint field: packed (bytes) or one varint.
  static func varints(_ value: Value) throws(Malformed) -> [UInt64] {
    switch value {
    case .varint(let number): return [number]
    case .bytes(let slice):
      var reader = ProtobufReader(slice)
      var result: [UInt64] = []
      while !reader.isAtEnd { result.append(try reader.varint()) }
      return result
    default: throw Malformed(description: "expected varint")
    }
  }
}
