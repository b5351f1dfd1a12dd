import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

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
  /// True when `functions` is the ELF symbol only because the source frames
  /// (file:line, inlining) did not fit the time budget; they are being
  /// computed for the next profile.
  var sourcePending = false

  /// The outermost (containing) function's name.
  var name: String? { functions.last?.name }
}

/// Address → image → function name, with caches that outlive a session:
/// symbol tables per image (keyed by path and load address) and resolved
/// names per address. A profile of a warmed-up process only looks up
/// addresses it has not seen before.
///
/// Source locations cost most the first time an image's units are met
/// (0.15 s for 10,000 new functions of one debug library; the toolchain's
/// symbolicator took 17 s), so a caller can give a budget: addresses not
/// reached in time get their ELF symbol name now, and their file:line and
/// inlined frames are computed in the background for the next profile.
final class Symbolizer: Sendable {
  static let shared = Symbolizer()

  private struct CacheKey: Hashable {
    var image: String
    var address: UInt64
  }

  private struct State {
    var tables: [String: ELFSymbolTable?] = [:]
    var resolved: [CacheKey: [ResolvedFrame.Function]] = [:]
    /// Resolved by ELF symbol only; source frames are being computed.
    var pending: Set<CacheKey> = []
    /// ELF names of addresses asked for without source locations (kept
    /// apart, so a profile that wants file:line still computes them).
    var namesOnly: [CacheKey: [ResolvedFrame.Function]] = [:]
  }

  /// What a names-only profile may spend reading DWARF for the few
  /// addresses no ELF symbol covers.
  static let namesOnlyDWARFBudget: Duration = .milliseconds(50)

  private let state = Mutex(State())
  /// Source frames computed in the background, taken in by the next `resolve`.
  private let completed = Mutex<[(CacheKey, [SourceFrame])]>([])
  private let source: any SourceSymbolicator

  init(source: any SourceSymbolicator = DWARFSourceSymbolicator()) {
    self.source = source
  }

  /// Resolves each address (already adjusted to the call site for callers):
  /// source frames (file:line, inlining) where the image has debug
  /// information, else the ELF symbol, else nothing. With a `budget`,
  /// source frames not found within it are replaced by the ELF symbol
  /// (`pendingSourceFrames` counts them) and completed in the background.
  /// `sourceLocations` false: function names from the ELF symbol tables
  /// (no file:line, no inlined frames, nothing computed in the background;
  /// DWARF only names the few addresses no symbol covers) —
  /// for profiles built every second or every upload interval, where the
  /// toolchain symbolicator's cost would be paid continuously.
  func resolve(
    _ addresses: [UInt64], in images: ImageMap, budget: Duration? = nil, sourceLocations: Bool = true
  ) -> [ResolvedFrame] {
    let deadline = budget.map { ContinuousClock.now + $0 }
    return state.withLock { state in
      for (key, frames) in completed.withLock({ done in defer { done = [] }; return done }) {
        state.pending.remove(key)
        let functions = Self.functions(frames, elfName: { state.resolved[key]?.last })
        if !functions.isEmpty { state.resolved[key] = functions }
      }
      var results = [ResolvedFrame](repeating: ResolvedFrame(image: nil, functions: []), count: addresses.count)
      var missing: [Int] = []
      for (position, address) in addresses.enumerated() {
        guard let (imageIndex, _) = images.lookup(address) else { continue }
        results[position].image = imageIndex
        let key = CacheKey(image: images.images[imageIndex].key, address: address)
        if let cached = state.resolved[key] {
          results[position].functions = cached
          results[position].sourcePending = state.pending.contains(key)
        } else {
          missing.append(position)
        }
      }
      guard !missing.isEmpty else { return results }
      if !sourceLocations {
        var unsymbolized: [(position: Int, key: CacheKey)] = []
        for position in missing {
          let image = images.images[results[position].image!]
          let key = CacheKey(image: image.key, address: addresses[position])
          if let cached = state.namesOnly[key] {
            results[position].functions = cached
            continue
          }
          let functions = Self.elfFunctions(addresses[position], in: image, tables: &state.tables)
          if functions.isEmpty {
            unsymbolized.append((position, key))
            continue
          }
          state.namesOnly[key] = functions
          results[position].functions = functions
        }
        for table in state.tables.values { table?.releasePages() }
        guard !unsymbolized.isEmpty else { return results }
        // No ELF symbol covers these: functions the compiler gave no symbol
        // (private ones such as Swift's `objectdestroy` helpers). Profiles
        // with file:line name them from DWARF; so do names-only ones, once
        // per address (the containing function only, no file:line), within
        // a short budget — those not reached are asked again next time.
        let frames = source.sourceFrames(
          for: unsymbolized.map { addresses[$0.position] }, images: images,
          deadline: ContinuousClock.now + Self.namesOnlyDWARFBudget)
        for ((position, key), frames) in zip(unsymbolized, frames) {
          guard let frames else { continue }
          let functions = Self.functions(frames, elfName: { nil }).last.map {
            [ResolvedFrame.Function(name: $0.name, systemName: $0.systemName, file: "", line: 0)]
          } ?? []
          state.namesOnly[key] = functions
          results[position].functions = functions
        }
        return results
      }
      let sourceFrames = source.sourceFrames(for: missing.map { addresses[$0] }, images: images, deadline: deadline)
      var later: [(CacheKey, UInt64)] = []
      for (position, frames) in zip(missing, sourceFrames) {
        let address = addresses[position]
        let image = images.images[results[position].image!]
        let key = CacheKey(image: image.key, address: address)
        var functions = Self.functions(frames ?? [], elfName: { Self.elfFunctions(address, in: image, tables: &state.tables).last })
        if frames == nil {
          results[position].sourcePending = true
          if state.pending.insert(key).inserted { later.append((key, address)) }
        }
        if functions.isEmpty { functions = Self.elfFunctions(address, in: image, tables: &state.tables) }
        state.resolved[key] = functions
        results[position].functions = functions
      }
      if !later.isEmpty {
        let keys = later.map(\.0)
        source.sourceFramesLater(for: later.map(\.1), images: images) { [self] first, frames in
          completed.withLock { $0.append(contentsOf: zip(keys[first..<first + frames.count], frames)) }
        }
      }
      return results
    }
  }

  /// The function of `address` by the image's ELF symbol table (loaded once).
  /// The containing function's ELF symbol: from the image's own symbol
  /// tables, else from its separate debug file's (`/usr/lib/debug/.build-id/
  /// ab/cdef….debug`: a stripped library's local functions, such as glibc's
  /// `__memset_avx2_unaligned_erms`, are only there). Both paths — names
  /// only and with file:line — name a frame the same way through here.
  private static func elfFunctions(
    _ address: UInt64, in image: LoadedImage, tables: inout [String: ELFSymbolTable?]
  ) -> [ResolvedFrame.Function] {
    let table: ELFSymbolTable?
    if let loaded = tables[image.key] {
      table = loaded
    } else {
      table = image.isVDSO ? ELFSymbolTable(vdso: ()) : ELFSymbolTable(path: image.path)
      tables[image.key] = table
    }
    var symbol = table?.lookup(address &- image.bias)
    if symbol == nil, !image.isVDSO, image.buildID.count > 2 {
      let key = "debug:" + image.key
      let debug: ELFSymbolTable?
      if let loaded = tables[key] {
        debug = loaded
      } else {
        let path = "/usr/lib/debug/.build-id/\(image.buildID.prefix(2))/\(image.buildID.dropFirst(2)).debug"
        debug = access(path, R_OK) == 0 ? ELFSymbolTable(path: path) : nil
        tables[key] = debug
      }
      symbol = debug?.lookup(address &- image.bias)
    }
    guard let symbol else { return [] }
    return [.init(name: Demangler.demangle(symbol.name), systemName: symbol.name, file: "", line: 0)]
  }

  /// Addresses of the last `resolve` calls still waiting for source frames.
  var pendingSourceFrames: Int {
    let arrived = completed.withLock { $0.count }
    return max(0, state.withLock { $0.pending.count } - arrived)
  }

  /// Source frames as functions. `elfName` names the outermost frame,
  /// which keeps its file:line; without an ELF symbol, the source frame's
  /// name stays (and a nameless one — a line table without a function
  /// entry — is dropped).
  private static func functions(
    _ frames: [SourceFrame], elfName: () -> ResolvedFrame.Function?
  ) -> [ResolvedFrame.Function] {
    var functions = frames.filter { !$0.rawName.isEmpty }.map {
      ResolvedFrame.Function(name: Demangler.demangle($0.rawName), systemName: $0.rawName, file: $0.file, line: $0.line)
    }
    guard let outer = frames.last, !outer.file.isEmpty || !outer.rawName.isEmpty else { return functions }
    // The containing function by its ELF symbol, as the names-only path and
    // every other tool (perf, the toolchain) name it; DWARF's name when no
    // symbol covers the address (local copies the linker left unnamed).
    if var named = elfName() {
      named.file = outer.file
      named.line = outer.line
      if outer.rawName.isEmpty {
        functions.append(named)
      } else {
        functions[functions.count - 1] = named
      }
    }
    return functions
  }

  /// Drops what reading symbols and DWARF holds (symbol tables, parsed
  /// line tables and inline trees, mapped files) and keeps the names of
  /// the addresses already resolved: for a process no session has used for
  /// a while (``UnwindTables/keptIdle``). A later profile reads again only
  /// for addresses it has not seen.
  func releaseTables() {
    state.withLock { $0.tables = [:] }
    (source as? DWARFSourceSymbolicator)?.reset()
  }

  /// Drops every cache (tests measure cold symbolization with it).
  func reset() {
    state.withLock { $0 = State() }
    completed.withLock { $0 = [] }
    (source as? DWARFSourceSymbolicator)?.reset()
  }
}
