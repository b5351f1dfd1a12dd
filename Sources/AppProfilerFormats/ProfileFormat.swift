/// Every output format in one table: its name (`format=` on the server,
/// `--format` in the CLI), file extension, content type, encoder and
/// decoder. The server, the per-request middleware and the CLI all use it.
///
/// | name | file | content type | decoder |
/// |---|---|---|---|
/// | `speedscope` | `.speedscope.json` | `application/json` | yes |
/// | `pprof` | `.pb.gz` | `application/octet-stream` (gzipped protobuf) | yes |
/// | `collapsed` | `.collapsed.txt` | `text/plain; charset=utf-8` | yes |
/// | `html` | `.html` | `text/html; charset=utf-8` | the profile embedded in the page |
public struct ProfileFormat: Sendable, Hashable, CustomStringConvertible {
  /// The name in `format=` and `--format`.
  public let name: String
  /// The extension of a file of this format, without the leading dot.
  public let fileExtension: String
  /// The `Content-Type` of an HTTP answer in this format.
  public let contentType: String
  /// Served as a download (`Content-Disposition: attachment`) rather than
  /// shown (binary formats).
  public let isBinary: Bool
  private let encoder: @Sendable (Profile, String?) -> [UInt8]
  private let decoder: @Sendable ([UInt8]) throws -> Profile

  public var description: String { name }

  public static func == (a: ProfileFormat, b: ProfileFormat) -> Bool { a.name == b.name }
  public func hash(into hasher: inout Hasher) { hasher.combine(name) }

  /// Encodes `profile`; `title` names it where the format has a title
  /// (speedscope's profile name, the HTML page).
  public func encode(_ profile: Profile, title: String? = nil) -> [UInt8] { encoder(profile, title) }

  /// Reads a file of this format back.
  public func decode(_ bytes: [UInt8]) throws -> Profile { try decoder(bytes) }

  public static let speedscope = ProfileFormat(
    name: "speedscope", fileExtension: "speedscope.json", contentType: "application/json", isBinary: false,
    encoder: { profile, title in SpeedscopeEncoder(name: title).encode(profile) },
    decoder: { try SpeedscopeDecoder().decode($0) })

  public static let pprof = ProfileFormat(
    name: "pprof", fileExtension: "pb.gz", contentType: "application/octet-stream", isBinary: true,
    encoder: { profile, _ in PprofEncoder().encode(profile) },
    decoder: { try PprofDecoder().decode($0) })

  public static let collapsed = ProfileFormat(
    name: "collapsed", fileExtension: "collapsed.txt", contentType: "text/plain; charset=utf-8", isBinary: false,
    encoder: { profile, _ in CollapsedEncoder(threadPrefix: false).encode(profile) },
    decoder: { try CollapsedDecoder().decode($0) })

  public static let html = ProfileFormat(
    name: "html", fileExtension: "html", contentType: "text/html; charset=utf-8", isBinary: false,
    encoder: { profile, title in HTMLFlameGraphEncoder(title: title).encode(profile) },
    decoder: { try SpeedscopeDecoder().decode(try HTMLFlameGraphEncoder.embeddedProfile($0)) })

  /// Every format, in the order the index pages and errors list them.
  public static let all: [ProfileFormat] = [.speedscope, .pprof, .collapsed, .html]

  /// "speedscope, pprof, collapsed, html": for error messages.
  public static var names: String { all.map(\.name).joined(separator: ", ") }

  /// The format called `name`.
  public init?(name: String) {
    guard let format = Self.all.first(where: { $0.name == name }) else { return nil }
    self = format
  }

  /// The format a file name implies: .json speedscope, .pb.gz/.pb/.pprof/.gz
  /// pprof, .txt/.collapsed/.folded collapsed, .html/.htm html.
  public init?(fileName: String) {
    let name = fileName.lowercased()
    let suffixes: [(ProfileFormat, [String])] = [
      (.speedscope, [".json"]), (.pprof, [".pb.gz", ".pb", ".pprof", ".gz"]),
      (.collapsed, [".txt", ".collapsed", ".folded"]), (.html, [".html", ".htm"]),
    ]
    guard let match = suffixes.first(where: { $0.1.contains { name.hasSuffix($0) } }) else { return nil }
    self = match.0
  }

  /// The format of a file's bytes: gzip or a protobuf field 1 → pprof, `{`
  /// → speedscope, `<` → our HTML page, anything else → collapsed stacks.
  public init(detecting bytes: [UInt8]) {
    if Gzip.isCompressed(bytes) || bytes.first == 0x0A {
      self = .pprof
      return
    }
    switch bytes.first(where: { ![0x20, 0x09, 0x0A, 0x0D].contains($0) }) {
    case UInt8(ascii: "{"): self = .speedscope
    case UInt8(ascii: "<"): self = .html
    default: self = .collapsed
    }
  }

  private init(
    name: String, fileExtension: String, contentType: String, isBinary: Bool,
    encoder: @escaping @Sendable (Profile, String?) -> [UInt8], decoder: @escaping @Sendable ([UInt8]) throws -> Profile
  ) {
    self.name = name
    self.fileExtension = fileExtension
    self.contentType = contentType
    self.isBinary = isBinary
    self.encoder = encoder
    self.decoder = decoder
  }
}
