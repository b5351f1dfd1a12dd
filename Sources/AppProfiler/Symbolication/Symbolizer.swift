import Synchronization

/// What one address resolved to.
struct ResolvedFrame: Sendable, Hashable {
  /// Index into the ImageMap used for the lookup; nil when no image holds it.
  var image: Int?
  /// Demangled function name; nil when the image has no symbol for it.
  var name: String?
  /// The symbol as stored in the binary.
  var systemName: String?
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
    var names: [CacheKey: (name: String, systemName: String)?] = [:]
  }

  private let state = Mutex(State())

  /// Resolves each address (already adjusted to the call site for callers).
  func resolve(_ addresses: [UInt64], in images: ImageMap) -> [ResolvedFrame] {
    state.withLock { state in
      addresses.map { address -> ResolvedFrame in
        guard let (imageIndex, _) = images.lookup(address) else {
          return ResolvedFrame(image: nil, name: nil, systemName: nil)
        }
        let image = images.images[imageIndex]
        let key = CacheKey(image: image.key, address: address)
        if let cached = state.names[key] {
          return ResolvedFrame(image: imageIndex, name: cached?.name, systemName: cached?.systemName)
        }
        let table: ELFSymbolTable?
        if let loaded = state.tables[image.key] {
          table = loaded
        } else {
          table = image.isVDSO ? nil : ELFSymbolTable(path: image.path)
          state.tables[image.key] = table
        }
        var result: (name: String, systemName: String)? = nil
        if let table, let symbol = table.lookup(address &- image.bias) {
          result = (Demangler.demangle(symbol.name), symbol.name)
        }
        state.names[key] = result
        return ResolvedFrame(image: imageIndex, name: result?.name, systemName: result?.systemName)
      }
    }
  }

  /// Drops every cache (tests measure cold symbolization with it).
  func reset() {
    state.withLock { $0 = State() }
  }
}
