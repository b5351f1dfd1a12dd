import Synchronization

/// What one address resolved to.
struct ResolvedFrame: Sendable, Hashable {
  /// One function at the address: with inlining, several (innermost first).
  struct Function: Sendable, Hashable {
    /// Demangled name.
    var name: String
    /// The symbol as stored in the binary.
    var systemName: String
    /// Source file, empty when unknown.
    var file: String
    /// Source line, 0 when unknown.
    var line: Int
  }

  /// Index into the ImageMap used for the lookup; nil when no image holds it.
  var image: Int?
  /// Innermost first; empty when nothing is known about the address.
  var functions: [Function]

  /// The outermost (containing) function's name.
  var name: String? { functions.last?.name }
}

/// Address → image → function name, with caches that outlive a session:
/// symbol tables per image (keyed by path and load address) and resolved
/// names per address. A profile of a warmed-up process only looks up
/// addresses it has not seen before.
final class Symbolizer: Sendable {
  static let shared = Symbolizer()

  private struct CacheKey: Hashable {
    var image: String
    var address: UInt64
  }

  private struct State {
    var tables: [String: ELFSymbolTable?] = [:]
    var resolved: [CacheKey: [ResolvedFrame.Function]] = [:]
  }

  private let state = Mutex(State())
  private let source: any SourceSymbolicator

  init(source: any SourceSymbolicator = RuntimeSourceSymbolicator()) {
    self.source = source
  }

  /// Resolves each address (already adjusted to the call site for callers):
  /// source frames (file:line, inlining) where the image has debug
  /// information, else the ELF symbol, else nothing.
  func resolve(_ addresses: [UInt64], in images: ImageMap) -> [ResolvedFrame] {
    state.withLock { state in
      var results = [ResolvedFrame](repeating: ResolvedFrame(image: nil, functions: []), count: addresses.count)
      var missing: [Int] = []
      for (position, address) in addresses.enumerated() {
        guard let (imageIndex, _) = images.lookup(address) else { continue }
        results[position].image = imageIndex
        let key = CacheKey(image: images.images[imageIndex].key, address: address)
        if let cached = state.resolved[key] {
          results[position].functions = cached
        } else {
          missing.append(position)
        }
      }
      guard !missing.isEmpty else { return results }
      let sourceFrames = source.sourceFrames(for: missing.map { addresses[$0] }, imageKeys: images.images.map(\.key))
      for (position, frames) in zip(missing, sourceFrames) {
        let address = addresses[position]
        let image = images.images[results[position].image!]
        var functions = frames.filter { !$0.rawName.isEmpty }.map {
          ResolvedFrame.Function(name: Demangler.demangle($0.rawName), systemName: $0.rawName, file: $0.file, line: $0.line)
        }
        if functions.isEmpty {
          let table: ELFSymbolTable?
          if let loaded = state.tables[image.key] {
            table = loaded
          } else {
            table = image.isVDSO ? nil : ELFSymbolTable(path: image.path)
            state.tables[image.key] = table
          }
          if let table, let symbol = table.lookup(address &- image.bias) {
            functions = [.init(name: Demangler.demangle(symbol.name), systemName: symbol.name, file: "", line: 0)]
          }
        }
        state.resolved[CacheKey(image: image.key, address: address)] = functions
        results[position].functions = functions
      }
      return results
    }
  }

  /// Drops every cache (tests measure cold symbolization with it).
  func reset() {
    state.withLock { $0 = State() }
  }
}
