/// File:line and inlined frames of one ELF file from its DWARF.
///
/// Opening reads only the unit headers and unit DIEs (which code each
/// compilation unit covers). A unit's line table and inline tree are built
/// the first time an address in it is asked about, and kept until the
/// owner's memory budget evicts them (`evict`).
final class DWARFImage {
  let file: ELFDebugFile
  let sections: DWARFSections
  private let units: [DWARFUnit]
  /// Unit code ranges sorted by start: (start, end, unit index).
  private let unitRanges: [(start: UInt64, end: UInt64, unit: Int)]

  struct Parsed {
    var lines: DWARFLineTable
    var tree: DWARFInlineTree
    var lastUse: UInt64
    var footprint: Int { lines.footprint + tree.footprint }
  }
  private(set) var parsed: [Int: Parsed] = [:]
  private var names: [UInt64: String] = [:]
  /// Abbreviation tables of the units parsed, by `.debug_abbrev` offset.
  private var abbreviationTables: [UInt64: [UInt64: DWARFAbbreviation]] = [:]
  /// Bytes of parsed tables, plus the file's inflated sections.
  private(set) var footprint = 0

  init?(file: ELFDebugFile) {
    guard let sections = DWARFSections(file) else { return nil }
    self.file = file
    self.sections = sections
    units = DWARFUnit.units(sections)
    var ranges: [(start: UInt64, end: UInt64, unit: Int)] = []
    for (index, unit) in units.enumerated() where unit.stmtList != nil {
      for range in unit.ranges where range.lowerBound != 0 {
        ranges.append((range.lowerBound, range.upperBound, index))
      }
    }
    ranges.sort { $0.start < $1.start }
    unitRanges = ranges
    footprint = file.inflatedBytes + units.count * MemoryLayout<DWARFUnit>.stride
  }

  static let macroExpansion = "__unknown_macro__"

  /// The frames at `address` (an ELF virtual address), innermost first, as
  /// the toolchain symbolicator reports them; nil when no unit covers it.
  /// `tick` orders uses for eviction.
  func frames(at address: UInt64, tick: UInt64) -> [SourceFrame]? {
    guard let unitIndex = unit(containing: address) else { return nil }
    var entry: Parsed
    if let cached = parsed[unitIndex] {
      entry = cached
    } else {
      let unit = units[unitIndex]
      entry = Parsed(
        lines: DWARFLineTable(at: unit.stmtList ?? .max, unit: unit, sections: sections),
        tree: DWARFInlineTree(unit: unit, abbreviations: abbreviations(of: unit), sections: sections), lastUse: tick)
      footprint += entry.footprint
      FreedMemory.noteTransientWork()
    }
    entry.lastUse = tick
    parsed[unitIndex] = entry

    let location = entry.lines.location(of: address)
    let chain = entry.tree.chain(at: address)
    guard !chain.isEmpty else {
      // Code without a function DIE (assembly): the line only; the caller names it.
      guard let location else { return [] }
      return [SourceFrame(rawName: "", file: location.file, line: location.line, inlined: false)]
    }
    var frames: [SourceFrame] = []
    frames.reserveCapacity(chain.count)
    var file = location?.file ?? ""
    var line = location?.line ?? 0
    for position in stride(from: chain.count - 1, through: 0, by: -1) {
      let node = entry.tree.nodes[Int(chain[position])]
      let name = name(ofDIE: node.nameDIE)
      // Swift marks a macro expansion as an inlined call of this pseudo
      // function: not a frame; the code's location stays with its caller
      // (as the toolchain symbolicator shows it).
      if position > 0 && name == Self.macroExpansion { continue }
      frames.append(SourceFrame(rawName: name, file: file, line: line, inlined: position > 0))
      // The caller's location is where this call was inlined.
      file = entry.lines.path(node.callFile)
      line = Int(node.callLine)
    }
    return frames
  }

  private func unit(containing address: UInt64) -> Int? {
    let low = unitRanges.countNotAfter(address) { $0.start }
    var index = low - 1
    // Unit ranges can nest or overlap (a unit's single low/high range
    // spanning another's code); look back a few entries.
    while index >= 0 && index >= low - 8 {
      if address < unitRanges[index].end { return unitRanges[index].unit }
      index -= 1
    }
    return nil
  }

  private func abbreviations(of unit: DWARFUnit) -> [UInt64: DWARFAbbreviation] {
    if let known = abbreviationTables[unit.abbrevOffset] { return known }
    let table = DWARFUnit.abbreviations(sections.abbrev, at: unit.abbrevOffset)
    abbreviationTables[unit.abbrevOffset] = table
    footprint += Self.footprint(of: table)
    return table
  }

  private static func footprint(of table: [UInt64: DWARFAbbreviation]) -> Int {
    table.values.reduce(64) { $0 + 48 + $1.specs.count * MemoryLayout<DWARFAbbreviation.Spec>.stride }
  }

  /// Drops the parsed tables of units not used since `tick`; returns the bytes freed.
  func evict(usedBefore tick: UInt64) -> Int {
    var freed = 0
    for (index, entry) in parsed where entry.lastUse < tick {
      freed += entry.footprint
      parsed[index] = nil
    }
    if parsed.isEmpty {
      names = [:]
      freed += abbreviationTables.values.reduce(0) { $0 + Self.footprint(of: $1) }
      abbreviationTables = [:]
    }
    footprint -= freed
    return freed
  }

  /// The linkage name of the function a DIE describes (else its name),
  /// following `DW_AT_specification` and `DW_AT_abstract_origin` (a
  /// definition's name is often on the declaration it points to).
  func name(ofDIE offset: UInt64) -> String {
    if let known = names[offset] { return known }
    var plainName: String?
    var linkageName: String?
    var current = offset
    for _ in 0..<4 {
      guard let found = readName(at: current) else { break }
      if let linkage = found.linkage, !linkage.isEmpty {
        linkageName = linkage
        break
      }
      if plainName == nil, let plain = found.plain, !plain.isEmpty { plainName = plain }
      guard let next = found.next, next != current else { break }
      current = next
    }
    let name = linkageName ?? plainName ?? ""
    names[offset] = name
    return name
  }

  private func readName(at offset: UInt64) -> (linkage: String?, plain: String?, next: UInt64?)? {
    // The unit holding the DIE.
    let low = units.countNotAfter(Int(clamping: offset)) { $0.offset }
    guard low > 0, Int(clamping: offset) < units[low - 1].end else { return nil }
    let unit = units[low - 1]
    var cursor = ByteCursor(UnsafeRawBufferPointer(rebasing: sections.info[0..<unit.end]), offset: Int(offset))
    guard let abbreviation = abbreviations(of: unit)[cursor.uleb()] else { return nil }
    var result: (linkage: String?, plain: String?, next: UInt64?) = (nil, nil, nil)
    for spec in abbreviation.specs {
      switch spec.attribute {
      case DW.atLinkageName, DW.atMIPSLinkageName: result.linkage = unit.string(unit.readValue(spec, &cursor, sections), sections)
      case DW.atName: result.plain = unit.string(unit.readValue(spec, &cursor, sections), sections)
      case DW.atSpecification, DW.atAbstractOrigin:
        if case .reference(let target) = unit.readValue(spec, &cursor, sections) { result.next = target }
      default: unit.skipValue(spec, &cursor)
      }
      if cursor.failed { return nil }
    }
    return result
  }
}
