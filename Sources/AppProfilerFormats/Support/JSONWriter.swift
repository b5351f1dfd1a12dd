/// A minimal streaming JSON writer: deterministic output (keys in the order
/// written), no Foundation, no intermediate dictionaries. Encoders of large
/// profiles write millions of numbers; this keeps that linear and cheap.
struct JSONWriter {
  private(set) var bytes: [UInt8] = []
  private var needsComma: [Bool] = [false]

  init(reservingCapacity capacity: Int = 1 << 16) {
    bytes.reserveCapacity(capacity)
  }

  private mutating func separator() {
    if needsComma[needsComma.count - 1] {
      bytes.append(UInt8(ascii: ","))
    } else {
      needsComma[needsComma.count - 1] = true
    }
  }

  mutating func beginObject() {
    separator()
    bytes.append(UInt8(ascii: "{"))
    needsComma.append(false)
  }

  mutating func endObject() {
    needsComma.removeLast()
    bytes.append(UInt8(ascii: "}"))
  }

  mutating func beginArray() {
    separator()
    bytes.append(UInt8(ascii: "["))
    needsComma.append(false)
  }

  mutating func endArray() {
    needsComma.removeLast()
    bytes.append(UInt8(ascii: "]"))
  }

  /// Writes `"name":`; the next value call writes the value.
  mutating func key(_ name: String) {
    separator()
    appendString(name)
    bytes.append(UInt8(ascii: ":"))
    needsComma[needsComma.count - 1] = false
  }

  mutating func string(_ value: String) {
    separator()
    appendString(value)
  }

  mutating func integer<T: BinaryInteger>(_ value: T) {
    separator()
    bytes.append(contentsOf: String(value).utf8)
  }

  mutating func bool(_ value: Bool) {
    separator()
    bytes.append(contentsOf: (value ? "true" : "false").utf8)
  }

  mutating func field(_ name: String, _ value: String) {
    key(name)
    string(value)
  }

  mutating func field<T: BinaryInteger>(_ name: String, _ value: T) {
    key(name)
    integer(value)
  }

  private mutating func appendString(_ value: String) {
    bytes.append(UInt8(ascii: "\""))
    for byte in value.utf8 {
      switch byte {
      case UInt8(ascii: "\""): bytes.append(contentsOf: [92, 34])
      case UInt8(ascii: "\\"): bytes.append(contentsOf: [92, 92])
      case 0x0A: bytes.append(contentsOf: [92, UInt8(ascii: "n")])
      case 0x0D: bytes.append(contentsOf: [92, UInt8(ascii: "r")])
      case 0x09: bytes.append(contentsOf: [92, UInt8(ascii: "t")])
      case 0..<0x20:
        let hex = Array("0123456789abcdef".utf8)
        bytes.append(contentsOf: [92, UInt8(ascii: "u"), 48, 48, hex[Int(byte >> 4)], hex[Int(byte & 15)]])
      default: bytes.append(byte)
      }
    }
    bytes.append(UInt8(ascii: "\""))
  }
}
