/// Splits a request target into its path and decoded query parameters.
///
/// `/profile?mode=cpu&duration=0.5` → ("/profile", [("mode","cpu"), ("duration","0.5")]).
/// `+` decodes to a space, `%XX` to its byte; an invalid escape is an error.
struct HTTPQuery: Sendable, Equatable {
  var path: String
  var parameters: [(name: String, value: String)]

  static func == (lhs: HTTPQuery, rhs: HTTPQuery) -> Bool {
    lhs.path == rhs.path && lhs.parameters.map(\.name) == rhs.parameters.map(\.name)
      && lhs.parameters.map(\.value) == rhs.parameters.map(\.value)
  }

  struct MalformedQuery: Error, Equatable {
    var text: String
  }

  init(target: String) throws {
    let parts = target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
    let rawPath = parts.first.map(String.init) ?? "/"
    path = try Self.percentDecode(rawPath, plusIsSpace: false)
    parameters = []
    guard parts.count == 2 else { return }
    for pair in parts[1].split(separator: "&", omittingEmptySubsequences: true) {
      let nameAndValue = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
      let name = try Self.percentDecode(String(nameAndValue[0]), plusIsSpace: true)
      let value = nameAndValue.count == 2 ? try Self.percentDecode(String(nameAndValue[1]), plusIsSpace: true) : ""
      parameters.append((name, value))
    }
  }

  /// The value of the first parameter called `name`.
  func value(_ name: String) -> String? {
    parameters.first { $0.name == name }?.value
  }

  static func percentDecode(_ text: String, plusIsSpace: Bool) throws -> String {
    var bytes: [UInt8] = []
    bytes.reserveCapacity(text.utf8.count)
    var iterator = Array(text.utf8).makeIterator()
    while let byte = iterator.next() {
      if byte == UInt8(ascii: "%") {
        guard let high = iterator.next().flatMap(hexValue), let low = iterator.next().flatMap(hexValue) else {
          throw MalformedQuery(text: text)
        }
        bytes.append(high << 4 | low)
      } else if byte == UInt8(ascii: "+") && plusIsSpace {
        bytes.append(UInt8(ascii: " "))
      } else {
        bytes.append(byte)
      }
    }
    guard let decoded = String(validating: bytes, as: UTF8.self) else { throw MalformedQuery(text: text) }
    return decoded
  }

  private static func hexValue(_ byte: UInt8) -> UInt8? {
    switch byte {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
    case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
    default: return nil
    }
  }
}
