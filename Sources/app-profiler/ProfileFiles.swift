import AppProfiler
import Foundation

/// Output formats and how files name them.
enum OutputFormat: String, CaseIterable {
  case speedscope, pprof, collapsed, html

  /// The format a file name implies: .json speedscope, .pb.gz/.pb/.pprof
  /// pprof, .txt/.collapsed/.folded collapsed, .html html.
  init?(fileName: String) {
    let name = fileName.lowercased()
    if name.hasSuffix(".json") {
      self = .speedscope
    } else if name.hasSuffix(".pb.gz") || name.hasSuffix(".pb") || name.hasSuffix(".pprof") || name.hasSuffix(".gz") {
      self = .pprof
    } else if name.hasSuffix(".txt") || name.hasSuffix(".collapsed") || name.hasSuffix(".folded") {
      self = .collapsed
    } else if name.hasSuffix(".html") || name.hasSuffix(".htm") {
      self = .html
    } else {
      return nil
    }
  }

  var fileExtension: String {
    switch self {
    case .speedscope: return "speedscope.json"
    case .pprof: return "pb.gz"
    case .collapsed: return "collapsed.txt"
    case .html: return "html"
    }
  }

  func encode(_ profile: Profile) -> [UInt8] {
    switch self {
    case .speedscope: return SpeedscopeEncoder().encode(profile)
    case .pprof: return PprofEncoder().encode(profile)
    case .collapsed: return CollapsedEncoder().encode(profile)
    case .html: return HTMLFlameGraphEncoder().encode(profile)
    }
  }
}

enum ProfileFiles {
  /// Reads any of our formats, recognised by content (gzip → pprof, `{` →
  /// speedscope, `<` → our HTML page, else collapsed stacks).
  static func read(_ path: String) throws(CLIError) -> Profile {
    guard let data = FileManager.default.contents(atPath: path) else { throw .failure("cannot read \(path)") }
    return try decode(Array(data), name: path)
  }

  static func decode(_ bytes: [UInt8], name: String) throws(CLIError) -> Profile {
    do {
      if Gzip.isCompressed(bytes) || bytes.first == 0x0A {
        return try PprofDecoder().decode(bytes)
      }
      let first = bytes.first { ![0x20, 0x09, 0x0A, 0x0D].contains($0) }
      if first == UInt8(ascii: "{") { return try SpeedscopeDecoder().decode(bytes) }
      if first == UInt8(ascii: "<") { return try SpeedscopeDecoder().decode(try embeddedJSON(bytes, name: name)) }
      return try CollapsedDecoder().decode(bytes)
    } catch let error as CLIError {
      throw error
    } catch {
      throw .failure("\(name): \(error)")
    }
  }

  /// The speedscope document inside one of our HTML pages.
  static func embeddedJSON(_ bytes: [UInt8], name: String) throws(CLIError) -> [UInt8] {
    let text = String(decoding: bytes, as: UTF8.self)
    let open = "<script type=\"application/json\" id=\"profile-data\">"
    guard let start = text.range(of: open), let end = text.range(of: "</script>", range: start.upperBound..<text.endIndex)
    else { throw .failure("\(name) is not an app-profiler HTML page") }
    return Array(text[start.upperBound..<end.lowerBound].replacingOccurrences(of: "<\\/", with: "</").utf8)
  }

  static func write(_ bytes: [UInt8], to path: String) throws(CLIError) {
    do {
      try Data(bytes).write(to: URL(fileURLWithPath: path))
    } catch {
      throw .failure("cannot write \(path): \(error.localizedDescription)")
    }
  }
}
