/// Function names as people read them: `Module.Type.f(x: Swift.Int) -> Swift.Int`
/// becomes `Type.f(x:)` — the name as Swift code writes it, without module,
/// argument types or result type. The same rule as the HTML viewer's
/// blocks (`HTMLFlameGraph`'s `shortName`); synthetic frames (`[async]`)
/// and names that are not Swift signatures stay as they are.
public enum ShortNames {
  public static func short(_ name: String) -> String {
    if name.hasPrefix("[") || name.contains("+0x") { return name }
    let text = removingDiscriminators(name)
    guard let open = text.firstIndex(of: "(") else { return dropModule(text) }
    let head = String(text[..<open])
    // Closures, specializations, thunks: the whole name is the information.
    if head.contains(" ") { return text }
    // The argument list: up to the ")" matching the first "("; effects
    // (async, throws) and the result type after it go.
    var depth = 0
    var close = text.endIndex
    for index in text[open...].indices {
      switch text[index] {
      case "(", "<", "[": depth += 1
      case ")", ">", "]":
        depth -= 1
        if depth == 0 && text[index] == ")" { close = index }
      default: break
      }
      if close != text.endIndex { break }
    }
    guard close != text.endIndex else { return dropModule(text) }
    let arguments = String(text[open...close])
    let labels = arguments.count > 2 ? "(" + topLevelParts(arguments).map { label($0) + ":" }.joined() + ")" : arguments
    return dropModule(head) + labels
  }

  /// "Module.Type.f" → "Type.f".
  static func dropModule(_ head: String) -> String {
    guard let dot = head.firstIndex(of: "."), dot > head.startIndex, !head.contains(" ") else { return head }
    return String(head[head.index(after: dot)...])
  }

  /// "(Name in _3F1A…)", a private declaration's discriminator, as "Name".
  static func removingDiscriminators(_ name: String) -> String {
    var result = ""
    var rest = Substring(name)
    while let open = rest.firstIndex(of: "(") {
      result += rest[..<open]
      let inside = rest[rest.index(after: open)...]
      if let close = inside.firstIndex(of: ")"), let marker = firstMarker(in: inside[..<close]) {
        let identifier = inside[..<marker]
        let discriminator = inside[inside.index(marker, offsetBy: 5)..<close]
        if !identifier.isEmpty, identifier.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == "$" }),
          !discriminator.isEmpty, discriminator.allSatisfy({ $0.isHexDigit && !$0.isLowercase })
        {
          result += identifier
          rest = inside[inside.index(after: close)...]
          continue
        }
      }
      result.append("(")
      rest = inside
    }
    return result + rest
  }

  /// Where " in _" starts.
  static func firstMarker(in text: Substring) -> Substring.Index? {
    var index = text.startIndex
    while index < text.endIndex {
      if text[index...].hasPrefix(" in _") { return index }
      index = text.index(after: index)
    }
    return nil
  }

  /// The comma-separated parts of "(a, b<c, d>, e)" at depth 0.
  static func topLevelParts(_ arguments: String) -> [Substring] {
    let inner = arguments.dropFirst().dropLast()
    var parts: [Substring] = []
    var depth = 0
    var start = inner.startIndex
    for index in inner.indices {
      switch inner[index] {
      case "(", "<", "[": depth += 1
      case ")", ">", "]": depth -= 1
      case "," where depth == 0:
        parts.append(inner[start..<index])
        start = inner.index(after: index)
      default: break
      }
    }
    parts.append(inner[start...])
    return parts
  }

  /// "x: Swift.Int" → "x"; "Swift.Int" → "_".
  static func label(_ part: Substring) -> String {
    let trimmed = part.drop { $0 == " " }
    guard let colon = trimmed.firstIndex(of: ":") else { return "_" }
    let candidate = trimmed[..<colon]
    let after = trimmed[trimmed.index(after: colon)...]
    guard let first = candidate.first, first.isLetter || first == "_",
      candidate.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }), after.first == " "
    else { return "_" }
    return String(candidate)
  }
}
