/// The DWARF sections a unit's attributes refer to.
struct DWARFSections {
  var info: UnsafeRawBufferPointer
  var abbrev: UnsafeRawBufferPointer
  var line: UnsafeRawBufferPointer
  var str: UnsafeRawBufferPointer
  var lineStr: UnsafeRawBufferPointer
  var strOffsets: UnsafeRawBufferPointer
  var addr: UnsafeRawBufferPointer
  var ranges: UnsafeRawBufferPointer
  var rnglists: UnsafeRawBufferPointer

  init?(_ file: ELFDebugFile) {
    guard let info = file.debugInfo, let line = file.debugLine else { return nil }
    self.info = info
    self.line = line
    abbrev = file.section(".debug_abbrev")
    str = file.section(".debug_str")
    lineStr = file.section(".debug_line_str")
    strOffsets = file.section(".debug_str_offsets")
    addr = file.section(".debug_addr")
    ranges = file.section(".debug_ranges")
    rnglists = file.section(".debug_rnglists")
  }
}

/// One abbreviation: a DIE's tag, whether it has children, and how its
/// attributes are encoded (`.debug_abbrev`: code uleb, tag uleb,
/// children u8, then (attribute uleb, form uleb[, implicit const sleb])
/// pairs ending with (0, 0)).
struct DWARFAbbreviation {
  struct Spec {
    var attribute: UInt64
    var form: UInt64
    var implicitConst: Int64
  }
  var tag: UInt64
  var hasChildren: Bool
  var specs: [Spec]
}

/// An attribute value as read; strings and addresses resolved on demand.
enum DWARFValue {
  case address(UInt64)
  case addressIndex(UInt64)
  case constant(UInt64)
  case sectionOffset(UInt64)
  case listIndex(UInt64)
  case string(String)
  case strp(UInt64)
  case lineStrp(UInt64)
  case stringIndex(UInt64)
  /// Absolute offset in `.debug_info`.
  case reference(UInt64)
  case other

  var number: UInt64? {
    switch self {
    case .constant(let value), .sectionOffset(let value): return value
    default: return nil
    }
  }
}

/// The DWARF constants used here (DWARF 5 §7).
enum DW {
  static let tagCompileUnit: UInt64 = 0x11
  static let tagPartialUnit: UInt64 = 0x3C
  static let tagSubprogram: UInt64 = 0x2E
  static let tagInlinedSubroutine: UInt64 = 0x1D

  static let atName: UInt64 = 0x03
  static let atStmtList: UInt64 = 0x10
  static let atLowPC: UInt64 = 0x11
  static let atHighPC: UInt64 = 0x12
  static let atCompDir: UInt64 = 0x1B
  static let atAbstractOrigin: UInt64 = 0x31
  static let atSpecification: UInt64 = 0x47
  static let atRanges: UInt64 = 0x55
  static let atCallFile: UInt64 = 0x58
  static let atCallLine: UInt64 = 0x59
  static let atLinkageName: UInt64 = 0x6E
  static let atMIPSLinkageName: UInt64 = 0x2007
  static let atStrOffsetsBase: UInt64 = 0x72
  static let atAddrBase: UInt64 = 0x73
  static let atRnglistsBase: UInt64 = 0x74
  static let atGNUAddrBase: UInt64 = 0x2133

  static let formIndirect: UInt64 = 0x16
  static let formImplicitConst: UInt64 = 0x21
}

extension DWARFSections {
  /// No sections: for skipping values whose size does not depend on them.
  static var none: DWARFSections {
    DWARFSections(
      info: ELFDebugFile.empty, abbrev: ELFDebugFile.empty, line: ELFDebugFile.empty, str: ELFDebugFile.empty,
      lineStr: ELFDebugFile.empty, strOffsets: ELFDebugFile.empty, addr: ELFDebugFile.empty,
      ranges: ELFDebugFile.empty, rnglists: ELFDebugFile.empty)
  }

  init(
    info: UnsafeRawBufferPointer, abbrev: UnsafeRawBufferPointer, line: UnsafeRawBufferPointer,
    str: UnsafeRawBufferPointer, lineStr: UnsafeRawBufferPointer, strOffsets: UnsafeRawBufferPointer,
    addr: UnsafeRawBufferPointer, ranges: UnsafeRawBufferPointer, rnglists: UnsafeRawBufferPointer
  ) {
    self.info = info
    self.abbrev = abbrev
    self.line = line
    self.str = str
    self.lineStr = lineStr
    self.strOffsets = strOffsets
    self.addr = addr
    self.ranges = ranges
    self.rnglists = rnglists
  }
}
