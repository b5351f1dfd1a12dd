/// Our DWARF reader against the toolchain's symbolicator on addresses of
/// this process: the tests and the release fixture (inlined code) use it.
@_spi(Testing) public enum SymbolicationCheck {
  public struct Result: Sendable {
    /// Addresses compared.
    public var compared = 0
    /// Addresses inside no sized ELF function symbol (padding between
    /// functions, data in the code segment): the toolchain names them after
    /// the symbol before them, we leave them unnamed. Not compared.
    public var outsideFunctions = 0
    /// Frames marked inlined among the compared addresses (ours).
    public var inlinedFrames = 0
    /// Addresses only we give file:line for (images whose DWARF is in a
    /// separate debug file under /usr/lib/debug, which the toolchain does
    /// not read). Not compared.
    public var onlyOurs = 0
    /// The addresses whose frames differ.
    public var mismatches: [Mismatch] = []
  }

  public struct Mismatch: Sendable {
    /// ELF virtual address and the file it is in.
    public var address: UInt64
    public var path: String
    /// Innermost first: (symbol, file, line).
    public var ours: [(name: String, file: String, line: Int)]
    public var toolchain: [(name: String, file: String, line: Int)]

    public var description: String {
      func describe(_ frames: [(name: String, file: String, line: Int)]) -> String {
        frames.map { "\($0.name) @ \($0.file):\($0.line)" }.joined(separator: " < ")
      }
      return "0x\(String(address, radix: 16)) in \(path):\n  ours:      \(describe(ours))\n  toolchain: \(describe(toolchain))"
    }
  }

  /// Addresses spread over the largest executable segment of the main executable.
  public static func sweepOfExecutable(count: Int) -> [UInt64] {
    let images = ImageMap.current()
    guard let executable = images.images.first(where: { $0.path == ImageMap.executablePath() }),
      let segment = executable.executableSegments.max(by: { $0.end - $0.start < $1.end - $1.start }), count > 0
    else { return [] }
    let step = (segment.end - segment.start) / UInt64(count)
    return (0..<UInt64(count)).map { segment.start + $0 * step + ($0 % 7) }
  }

  /// Resolves `addresses` (instruction addresses) with both symbolicators
  /// and compares every frame: function, file, line, inlined or not.
  public static func compareWithToolchain(_ addresses: [UInt64]) -> Result {
    let images = ImageMap.current()
    var result = Result()
    var tables: [Int: ELFSymbolTable?] = [:]
    let kept = addresses.filter { address in
      guard let (index, _) = images.lookup(address) else { return false }
      let image = images.images[index]
      if image.isVDSO { return false }
      if tables[index] == nil { tables[index] = ELFSymbolTable(path: image.path) }
      guard let table = tables[index]!, table.lookup(address &- image.bias) != nil else {
        result.outsideFunctions += 1
        return false
      }
      return true
    }
    let ours = Symbolizer(source: DWARFSourceSymbolicator(fallback: NoSourceFrames())).resolve(kept, in: images)
    let theirs = Symbolizer(source: RuntimeSourceSymbolicator()).resolve(kept, in: images)
    for index in kept.indices {
      if theirs[index].functions.allSatisfy({ $0.file.isEmpty }) && ours[index].functions.contains(where: { !$0.file.isEmpty }) {
        result.onlyOurs += 1
        continue
      }
      result.compared += 1
      result.inlinedFrames += max(0, ours[index].functions.count - 1)
      let mine = ours[index].functions
      let reference = theirs[index].functions.filter { $0.systemName != "<unknown>" }
      let same =
        mine.count == reference.count
        && zip(mine, reference).allSatisfy { mine, reference in
          mine.systemName == reference.systemName && mine.line == reference.line
            && samePath(mine.file, reference.file)
        }
      if !same {
        let image = images.images[ours[index].image ?? 0]
        result.mismatches.append(
          Mismatch(
            address: kept[index] &- image.bias, path: image.path,
            ours: mine.map { ($0.systemName, $0.file, $0.line) },
            toolchain: reference.map { ($0.systemName, $0.file, $0.line) }))
      }
    }
    return result
  }

  /// The toolchain joins a DWARF 5 file's directory 0 (the compilation
  /// directory) only when it is not already there, and doubles the slash of
  /// a file in the root ("//<compiler-generated>"); we always give the
  /// absolute path.
  static func samePath(_ ours: String, _ theirs: String) -> Bool {
    let theirs = theirs.replacing("//", with: "/")
    if ours == theirs { return true }
    return !theirs.hasPrefix("/") && !theirs.isEmpty && ours.hasSuffix("/" + theirs)
  }
}

/// A source symbolicator that knows nothing (no fallback for declined images).
struct NoSourceFrames: SourceSymbolicator {
  func sourceFrames(for addresses: [UInt64], images: ImageMap, deadline: ContinuousClock.Instant?) -> [[SourceFrame]?] {
    addresses.map { _ in [] }
  }

  func sourceFramesLater(
    for addresses: [UInt64], images: ImageMap, deliver: @escaping @Sendable (Int, [[SourceFrame]]) -> Void
  ) {
    deliver(0, addresses.map { _ in [] })
  }
}
