/// The functions of one compilation unit with code, and the calls inlined
/// into them: `DW_TAG_subprogram` DIEs with addresses, and the
/// `DW_TAG_inlined_subroutine` DIEs nested in them (through lexical blocks),
/// read from `.debug_info` once per unit.
///
/// An address is answered by finding the function that contains it and
/// descending into the inlined calls that contain it: the chain outermost
/// first. Names are not read here: a node keeps the offset of the DIE that
/// names it (its abstract origin for an inlined call).
struct DWARFInlineTree {
  struct Node {
    /// Offset in `.debug_info` of the DIE that names this function.
    var nameDIE: UInt64
    /// Where the call was (inlined calls): a file index of the unit's line table.
    var callFile: UInt32
    var callLine: UInt32
    var firstRange: Int32
    var rangeCount: Int32
    var firstChild: Int32 = -1
    var nextSibling: Int32 = -1
  }

  private(set) var nodes: [Node] = []
  private(set) var ranges: [Range<UInt64>] = []
  /// Out-of-line functions' ranges, sorted by start: (start, end, node).
  private var functions: [(start: UInt64, end: UInt64, node: Int32)] = []

  var footprint: Int { nodes.count * MemoryLayout<Node>.stride + ranges.count * 16 + functions.count * 24 + 64 }

  init() {}

  init(unit: DWARFUnit, abbreviations: [UInt64: DWARFAbbreviation], sections: DWARFSections) {
    var cursor = ByteCursor(UnsafeRawBufferPointer(rebasing: sections.info[0..<unit.end]), offset: unit.diesOffset)
    // The enclosing node of each open DIE with children (-1: none).
    var enclosing: [Int32] = []
    var lastChild: [Int32: Int32] = [:]
    // The first DIE is the unit's own; its children follow.
    while !cursor.atEnd {
      let dieOffset = UInt64(cursor.offset)
      let code = cursor.uleb()
      if code == 0 {
        if enclosing.popLast() == nil { break }
        continue
      }
      guard let abbreviation = abbreviations[code] else { break }
      let tag = abbreviation.tag
      let parent = enclosing.last ?? -1
      var nodeIndex: Int32 = -1
      if tag == DW.tagSubprogram || tag == DW.tagInlinedSubroutine {
        var low: UInt64?
        var high: DWARFValue?
        var rangesValue: DWARFValue?
        var origin: UInt64?
        var callFile: UInt64 = 0
        var callLine: UInt64 = 0
        for spec in abbreviation.specs {
          switch spec.attribute {
          case DW.atLowPC: low = unit.address(unit.readValue(spec, &cursor, sections), sections)
          case DW.atHighPC: high = unit.readValue(spec, &cursor, sections)
          case DW.atRanges: rangesValue = unit.readValue(spec, &cursor, sections)
          case DW.atAbstractOrigin:
            if case .reference(let offset) = unit.readValue(spec, &cursor, sections) { origin = offset }
          case DW.atCallFile: callFile = unit.readValue(spec, &cursor, sections).number ?? 0
          case DW.atCallLine: callLine = unit.readValue(spec, &cursor, sections).number ?? 0
          default: unit.skipValue(spec, &cursor)
          }
        }
        var nodeRanges: [Range<UInt64>] = []
        if let rangesValue {
          nodeRanges = unit.ranges(rangesValue, sections)
        } else if let low, let high, let range = unit.pcRange(low: low, high: high, sections) {
          nodeRanges = [range]
        }
        nodeRanges.removeAll { $0.lowerBound == 0 }  // discarded by the linker
        if !nodeRanges.isEmpty {
          let inlined = tag == DW.tagInlinedSubroutine
          // An inlined call outside any function (or in a discarded one) is dropped.
          if !inlined || parent >= 0 {
            nodeIndex = Int32(nodes.count)
            if unit.version < 5 && callFile > 0 { callFile -= 1 }  // 1-based before DWARF 5
            nodes.append(
              Node(
                nameDIE: inlined ? (origin ?? dieOffset) : dieOffset, callFile: UInt32(clamping: callFile),
                callLine: UInt32(clamping: callLine), firstRange: Int32(ranges.count), rangeCount: Int32(nodeRanges.count)))
            ranges.append(contentsOf: nodeRanges)
            if inlined {
              if let previous = lastChild[parent] {
                nodes[Int(previous)].nextSibling = nodeIndex
              } else {
                nodes[Int(parent)].firstChild = nodeIndex
              }
              lastChild[parent] = nodeIndex
            } else {
              for range in nodeRanges { functions.append((range.lowerBound, range.upperBound, nodeIndex)) }
            }
          }
        }
      } else {
        for spec in abbreviation.specs { unit.skipValue(spec, &cursor) }
      }
      if cursor.failed { break }
      if abbreviation.hasChildren {
        // Inlined calls belong to the nearest enclosing function or call.
        enclosing.append(nodeIndex >= 0 ? nodeIndex : (tag == DW.tagSubprogram ? -1 : parent))
      }
    }
    functions.sort { $0.start < $1.start }
  }

  /// The chain of nodes containing `address`: the function first, then each
  /// inlined call inside it; empty when no function of this unit has it.
  func chain(at address: UInt64) -> [Int32] {
    let low = functions.countNotAfter(address) { $0.start }
    // Ranges of different functions do not overlap, but look back a little
    // in case a zero-length or odd entry precedes the right one.
    var index = low - 1
    var function: Int32 = -1
    while index >= 0 && index >= low - 4 {
      if functions[index].start <= address && address < functions[index].end {
        function = functions[index].node
        break
      }
      index -= 1
    }
    guard function >= 0 else { return [] }
    var chain = [function]
    var current = function
    descend: while true {
      var child = nodes[Int(current)].firstChild
      while child >= 0 {
        if contains(child, address) {
          chain.append(child)
          current = child
          continue descend
        }
        child = nodes[Int(child)].nextSibling
      }
      return chain
    }
  }

  private func contains(_ node: Int32, _ address: UInt64) -> Bool {
    let entry = nodes[Int(node)]
    for index in Int(entry.firstRange)..<Int(entry.firstRange + entry.rangeCount) where ranges[index].contains(address) {
      return true
    }
    return false
  }
}
