/// One unit of `.debug_info` (compile or partial unit; type units are skipped).
///
/// Header (DWARF 2–4): unit_length (4, or 0xffffffff + 8), version u16,
/// debug_abbrev_offset (offset size), address_size u8. DWARF 5: unit_length,
/// version, unit_type u8, address_size u8, debug_abbrev_offset, then 8 bytes
/// of dwo_id for skeleton and split units.
struct DWARFUnit {
  var offset: Int
  /// Offset of the first DIE.
  var diesOffset: Int
  var end: Int
  var version: Int
  var offsetSize: Int
  var addressSize: Int
  /// Offset of the unit's abbreviation table in `.debug_abbrev` (read when
  /// the unit is parsed: kept for every unit, the tables of a large binary
  /// took 40 MB).
  var abbrevOffset: UInt64
  // From the unit DIE.
  var lowPC: UInt64 = 0
  var compDir = ""
  var name = ""
  var stmtList: UInt64?
  var strOffsetsBase: UInt64 = 8
  var addrBase: UInt64 = 8
  var rnglistsBase: UInt64 = 12
  /// The unit's code ranges (ELF virtual addresses).
  var ranges: [Range<UInt64>] = []

  /// Every compile unit of `sections.info`, its unit DIE read.
  static func units(_ sections: DWARFSections) -> [DWARFUnit] {
    var units: [DWARFUnit] = []
    var cursor = ByteCursor(sections.info)
    while !cursor.atEnd {
      let start = cursor.offset
      let (length, offsetSize) = cursor.initialLength()
      guard !cursor.failed, length > 0, let end = cursor.offset(after: length) else { break }
      defer { cursor.offset = end }
      let version = Int(cursor.u16())
      var unitType: UInt8 = 1
      var addressSize = 8
      var abbrevOffset: UInt64 = 0
      if version >= 5 {
        unitType = cursor.u8()
        addressSize = Int(cursor.u8())
        abbrevOffset = cursor.unsigned(size: offsetSize)
        if unitType == 4 || unitType == 5 { cursor.skip(8) }  // skeleton, split_compile: dwo_id
        guard unitType == 1 || unitType == 3 || unitType == 4 else { continue }  // compile, partial, skeleton
      } else if version >= 2 {
        abbrevOffset = cursor.unsigned(size: offsetSize)
        addressSize = Int(cursor.u8())
      } else {
        continue
      }
      guard !cursor.failed, addressSize == 8 || addressSize == 4 else { continue }
      var unit = DWARFUnit(
        offset: start, diesOffset: cursor.offset, end: end, version: version, offsetSize: offsetSize,
        addressSize: addressSize, abbrevOffset: abbrevOffset)
      unit.readUnitDIE(sections)
      units.append(unit)
    }
    return units
  }

  /// The unit's whole abbreviation table; with `only`, just that code's
  /// entry (the unit DIE's, usually the first).
  static func abbreviations(
    _ section: UnsafeRawBufferPointer, at offset: UInt64, only: UInt64? = nil
  ) -> [UInt64: DWARFAbbreviation] {
    var result: [UInt64: DWARFAbbreviation] = [:]
    guard offset < UInt64(section.count) else { return result }
    var cursor = ByteCursor(section, offset: Int(offset))
    while !cursor.atEnd {
      let code = cursor.uleb()
      if code == 0 { break }
      let tag = cursor.uleb()
      let hasChildren = cursor.u8() != 0
      var specs: [DWARFAbbreviation.Spec] = []
      while !cursor.failed {
        let attribute = cursor.uleb()
        let form = cursor.uleb()
        if attribute == 0 && form == 0 { break }
        let implicitConst = form == DW.formImplicitConst ? cursor.sleb() : 0
        specs.append(.init(attribute: attribute, form: form, implicitConst: implicitConst))
      }
      result[code] = DWARFAbbreviation(tag: tag, hasChildren: hasChildren, specs: specs)
      if let only, code == only { break }
    }
    return result
  }

  private mutating func readUnitDIE(_ sections: DWARFSections) {
    var cursor = ByteCursor(sections.info, offset: diesOffset)
    let code = cursor.uleb()
    guard let abbreviation = Self.abbreviations(sections.abbrev, at: abbrevOffset, only: code)[code] else { return }
    // Bases first: strx/addrx forms in the unit DIE itself depend on them.
    var values: [(UInt64, DWARFValue)] = []
    for spec in abbreviation.specs {
      let value = readValue(spec, &cursor, sections)
      values.append((spec.attribute, value))
      switch spec.attribute {
      case DW.atStrOffsetsBase: strOffsetsBase = value.number ?? strOffsetsBase
      case DW.atAddrBase, DW.atGNUAddrBase: addrBase = value.number ?? addrBase
      case DW.atRnglistsBase: rnglistsBase = value.number ?? rnglistsBase
      default: break
      }
    }
    var highPC: DWARFValue?
    var rangesValue: DWARFValue?
    for (attribute, value) in values {
      switch attribute {
      case DW.atLowPC: lowPC = address(value, sections) ?? 0
      case DW.atHighPC: highPC = value
      case DW.atRanges: rangesValue = value
      case DW.atStmtList: stmtList = value.number
      case DW.atCompDir: compDir = string(value, sections) ?? ""
      case DW.atName: name = string(value, sections) ?? ""
      default: break
      }
    }
    if let rangesValue {
      ranges = self.ranges(rangesValue, sections)
    } else if let highPC, let range = pcRange(low: lowPC, high: highPC, sections) {
      ranges = [range]
    }
  }

  // MARK: Attribute values

  /// Reads one attribute value; unknown forms end the DIE (`failed`).
  func readValue(_ spec: DWARFAbbreviation.Spec, _ cursor: inout ByteCursor, _ sections: DWARFSections) -> DWARFValue {
    var form = spec.form
    if form == DW.formIndirect { form = cursor.uleb() }
    switch form {
    case 0x01: return .address(cursor.unsigned(size: addressSize))  // addr
    case 0x1B, 0x1F01: return .addressIndex(cursor.uleb())  // addrx, GNU_addr_index
    case 0x29: return .addressIndex(UInt64(cursor.u8()))
    case 0x2A: return .addressIndex(UInt64(cursor.u16()))
    case 0x2B: return .addressIndex(cursor.u24())
    case 0x2C: return .addressIndex(UInt64(cursor.u32()))
    case 0x0B: return .constant(UInt64(cursor.u8()))  // data1
    case 0x05: return .constant(UInt64(cursor.u16()))  // data2
    case 0x06: return .constant(UInt64(cursor.u32()))  // data4
    case 0x07: return .constant(cursor.u64())  // data8
    case 0x1E: cursor.skip(16); return .other  // data16
    case 0x0D: return .constant(UInt64(bitPattern: cursor.sleb()))  // sdata
    case 0x0F: return .constant(cursor.uleb())  // udata
    case 0x21: return .constant(UInt64(bitPattern: spec.implicitConst))  // implicit_const
    case 0x0C: return .constant(UInt64(cursor.u8()))  // flag
    case 0x19: return .constant(1)  // flag_present
    case 0x17: return .sectionOffset(cursor.unsigned(size: offsetSize))  // sec_offset
    case 0x22, 0x23: return .listIndex(cursor.uleb())  // loclistx, rnglistx
    case 0x08: return .string(cursor.cString())  // string
    case 0x0E: return .strp(cursor.unsigned(size: offsetSize))  // strp
    case 0x1F: return .lineStrp(cursor.unsigned(size: offsetSize))  // line_strp
    case 0x1A, 0x1F02: return .stringIndex(cursor.uleb())  // strx, GNU_str_index
    case 0x25: return .stringIndex(UInt64(cursor.u8()))
    case 0x26: return .stringIndex(UInt64(cursor.u16()))
    case 0x27: return .stringIndex(cursor.u24())
    case 0x28: return .stringIndex(UInt64(cursor.u32()))
    case 0x11: return .reference(UInt64(offset) + UInt64(cursor.u8()))  // ref1
    case 0x12: return .reference(UInt64(offset) + UInt64(cursor.u16()))
    case 0x13: return .reference(UInt64(offset) + UInt64(cursor.u32()))
    case 0x14: return .reference(UInt64(offset) &+ cursor.u64())
    case 0x15: return .reference(UInt64(offset) &+ cursor.uleb())
    case 0x10: return .reference(cursor.unsigned(size: version <= 2 ? addressSize : offsetSize))  // ref_addr
    case 0x20: cursor.skip(8); return .other  // ref_sig8
    case 0x1C: cursor.skip(4); return .other  // ref_sup4
    case 0x24: cursor.skip(8); return .other  // ref_sup8
    case 0x1D, 0x1F20, 0x1F21: cursor.skip(offsetSize); return .other  // strp_sup, GNU_ref_alt, GNU_strp_alt
    case 0x18, 0x09: cursor.skip(cursor.uleb()); return .other  // exprloc, block
    case 0x0A: cursor.skip(Int(cursor.u8())); return .other  // block1
    case 0x03: cursor.skip(Int(cursor.u16())); return .other  // block2
    case 0x04: cursor.skip(Int(cursor.u32())); return .other  // block4
    default:
      cursor.fail()
      return .other
    }
  }

  /// Skips one attribute value without building it (the DIE walk's hot path).
  func skipValue(_ spec: DWARFAbbreviation.Spec, _ cursor: inout ByteCursor) {
    switch spec.form {
    case 0x19, 0x21: return
    case 0x0B, 0x0C, 0x11, 0x25, 0x29: cursor.skip(1)
    case 0x05, 0x12, 0x26, 0x2A: cursor.skip(2)
    case 0x27, 0x2B: cursor.skip(3)
    case 0x06, 0x13, 0x28, 0x2C, 0x1C: cursor.skip(4)
    case 0x07, 0x14, 0x20, 0x24: cursor.skip(8)
    case 0x01: cursor.skip(addressSize)
    case 0x0E, 0x17, 0x1F, 0x1D, 0x1F20, 0x1F21: cursor.skip(offsetSize)
    case 0x0D, 0x0F, 0x15, 0x1A, 0x1B, 0x22, 0x23, 0x1F01, 0x1F02: _ = cursor.uleb()
    default:
      var scratch = cursor
      let sections = DWARFSections.none
      _ = readValue(spec, &scratch, sections)
      cursor = scratch
    }
  }

  func string(_ value: DWARFValue, _ sections: DWARFSections) -> String? {
    switch value {
    case .string(let text): return text
    case .strp(let offset): return ByteCursor.string(in: sections.str, at: offset)
    case .lineStrp(let offset): return ByteCursor.string(in: sections.lineStr, at: offset)
    case .stringIndex(let index):
      var cursor = ByteCursor(sections.strOffsets)
      let position = strOffsetsBase &+ index &* UInt64(offsetSize)
      guard position < UInt64(sections.strOffsets.count) else { return nil }
      cursor.offset = Int(position)
      let offset = cursor.unsigned(size: offsetSize)
      return cursor.failed ? nil : ByteCursor.string(in: sections.str, at: offset)
    default: return nil
    }
  }

  func address(_ value: DWARFValue, _ sections: DWARFSections) -> UInt64? {
    switch value {
    case .address(let address): return address
    case .addressIndex(let index): return address(index: index, sections)
    default: return nil
    }
  }

  func address(index: UInt64, _ sections: DWARFSections) -> UInt64? {
    let position = addrBase &+ index &* UInt64(addressSize)
    guard position < UInt64(sections.addr.count) else { return nil }
    var cursor = ByteCursor(sections.addr, offset: Int(position))
    let address = cursor.unsigned(size: addressSize)
    return cursor.failed ? nil : address
  }

  /// low_pc/high_pc: high is an address (address forms) or a length (constants).
  func pcRange(low: UInt64, high: DWARFValue, _ sections: DWARFSections) -> Range<UInt64>? {
    let end: UInt64
    switch high {
    case .constant(let length): end = low &+ length
    default:
      guard let address = address(high, sections) else { return nil }
      end = address
    }
    return low < end ? low..<end : nil
  }

  /// DW_AT_ranges: `.debug_ranges` (DWARF 2–4) or `.debug_rnglists` (5).
  func ranges(_ value: DWARFValue, _ sections: DWARFSections) -> [Range<UInt64>] {
    if version < 5 {
      guard case .sectionOffset(let offset) = value else { return [] }
      return rangesV4(at: offset, sections)
    }
    var offset: UInt64
    switch value {
    case .sectionOffset(let absolute): offset = absolute
    case .listIndex(let index):
      // rnglistx: an offset table after the list header, relative to the base.
      let position = rnglistsBase &+ index &* UInt64(offsetSize)
      guard position < UInt64(sections.rnglists.count) else { return [] }
      var cursor = ByteCursor(sections.rnglists, offset: Int(position))
      offset = rnglistsBase &+ cursor.unsigned(size: offsetSize)
      if cursor.failed { return [] }
    default: return []
    }
    return rangeList(at: offset, sections)
  }

  /// `.debug_ranges`: (start, end) address pairs relative to the unit's base,
  /// (max, base) sets the base, (0, 0) ends.
  private func rangesV4(at offset: UInt64, _ sections: DWARFSections) -> [Range<UInt64>] {
    guard offset < UInt64(sections.ranges.count) else { return [] }
    var cursor = ByteCursor(sections.ranges, offset: Int(offset))
    let maxAddress: UInt64 = addressSize == 8 ? .max : 0xFFFF_FFFF
    var base = lowPC
    var result: [Range<UInt64>] = []
    while !cursor.failed {
      let start = cursor.unsigned(size: addressSize)
      let end = cursor.unsigned(size: addressSize)
      if cursor.failed || (start == 0 && end == 0) { break }
      if start == maxAddress {
        base = end
      } else if start < end {
        result.append((base &+ start)..<(base &+ end))
      }
    }
    return result
  }

  /// `.debug_rnglists` entries: kind u8, then operands by kind.
  private func rangeList(at offset: UInt64, _ sections: DWARFSections) -> [Range<UInt64>] {
    guard offset < UInt64(sections.rnglists.count) else { return [] }
    var cursor = ByteCursor(sections.rnglists, offset: Int(offset))
    var base = lowPC
    var result: [Range<UInt64>] = []
    func add(_ start: UInt64?, _ end: UInt64?) {
      if let start, let end, start < end { result.append(start..<end) }
    }
    while !cursor.failed {
      switch cursor.u8() {
      case 0: return result  // end_of_list
      case 1: base = address(index: cursor.uleb(), sections) ?? base  // base_addressx
      case 2:  // startx_endx
        let start = address(index: cursor.uleb(), sections)
        add(start, address(index: cursor.uleb(), sections))
      case 3:  // startx_length
        let start = address(index: cursor.uleb(), sections)
        let length = cursor.uleb()
        add(start, start.map { $0 &+ length })
      case 4:  // offset_pair
        let start = cursor.uleb()
        add(base &+ start, base &+ cursor.uleb())
      case 5: base = cursor.unsigned(size: addressSize)  // base_address
      case 6:  // start_end
        let start = cursor.unsigned(size: addressSize)
        add(start, cursor.unsigned(size: addressSize))
      case 7:  // start_length
        let start = cursor.unsigned(size: addressSize)
        add(start, start &+ cursor.uleb())
      default: return result
      }
    }
    return result
  }
}
