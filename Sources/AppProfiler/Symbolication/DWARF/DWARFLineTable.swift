/// A compilation unit's `.debug_line` program, run once into a sorted
/// address → (file, line) table.
///
/// The toolchain symbolicator re-runs the line program for every address it
/// is asked about (1.7 ms each in a unit of 10,000 functions); this runs it
/// once per unit and answers each address with a binary search.
///
/// Header (DWARF 2–5, §6.2.4): unit_length, version u16, [5: address_size
/// u8, segment_selector_size u8], header_length (offset size),
/// minimum_instruction_length u8, [4+: maximum_operations_per_instruction
/// u8], default_is_stmt u8, line_base i8, line_range u8, opcode_base u8,
/// standard_opcode_lengths[opcode_base − 1]; then the directory and file
/// tables: NUL-terminated lists before 5, counted entries described by
/// (content type, form) pairs in 5.
struct DWARFLineTable {
  /// Row addresses, ascending; a row with `file == endOfSequence` marks the
  /// first address after a sequence.
  private(set) var addresses: [UInt64] = []
  private(set) var files: [UInt32] = []
  private(set) var lines: [UInt32] = []
  /// Paths by file index, directory joined.
  private(set) var paths: [String] = []

  static let endOfSequence = UInt32.max

  /// Bytes held (for the cache's budget).
  var footprint: Int { addresses.count * 16 + paths.reduce(0) { $0 + $1.utf8.count + 16 } + 64 }

  /// The file and line of `address`, nil when no sequence covers it.
  func location(of address: UInt64) -> (file: String, line: Int)? {
    let low = addresses.countNotAfter(address) { $0 }
    guard low > 0 else { return nil }
    let file = files[low - 1]
    guard file != Self.endOfSequence else { return nil }
    return (path(file), Int(lines[low - 1]))
  }

  func path(_ index: UInt32) -> String { Int(index) < paths.count ? paths[Int(index)] : "" }

  init() {}

  /// Runs the program at `offset` of `sections.line`; `unit` supplies the
  /// compilation directory and string sections. An empty table when the
  /// header cannot be read.
  init(at offset: UInt64, unit: DWARFUnit, sections: DWARFSections) {
    guard offset < UInt64(sections.line.count) else { return }
    var cursor = ByteCursor(sections.line, offset: Int(offset))
    let (length, offsetSize) = cursor.initialLength()
    guard !cursor.failed, let end = cursor.offset(after: length) else { return }
    let version = Int(cursor.u16())
    guard version >= 2 && version <= 5 else { return }
    if version >= 5 {
      _ = cursor.u8()  // address_size: DW_LNE_set_address says its own
      _ = cursor.u8()
    }
    let headerLength = cursor.unsigned(size: offsetSize)
    guard let programStart = cursor.offset(after: headerLength) else { return }
    let minimumInstructionLength = UInt64(cursor.u8())
    if version >= 4 { _ = cursor.u8() }  // maximum_operations_per_instruction (VLIW only)
    let defaultIsStmt = cursor.u8() != 0
    let lineBase = Int64(cursor.i8())
    let lineRange = UInt64(cursor.u8())
    let opcodeBase = cursor.u8()
    guard !cursor.failed, lineRange > 0, opcodeBase > 0, programStart <= end else { return }
    var standardLengths = [UInt8](repeating: 0, count: Int(opcodeBase))
    for index in 1..<Int(opcodeBase) { standardLengths[index] = cursor.u8() }
    if version >= 5 {
      paths = Self.fileTableV5(&cursor, offsetSize: offsetSize, unit: unit, sections: sections)
    } else {
      paths = Self.fileTableV4(&cursor, unit: unit)
    }
    guard !cursor.failed else { return }
    _ = defaultIsStmt

    // The state machine (§6.2.2); rows of one sequence, then the next.
    var sequences: [(start: UInt64, rows: Range<Int>)] = []
    var rowAddresses: [UInt64] = []
    var rowFiles: [UInt32] = []
    var rowLines: [UInt32] = []
    var address: UInt64 = 0
    var file: UInt64 = 1
    var line: Int64 = 1
    var sequenceStart = 0
    func emit(end: Bool) {
      rowAddresses.append(address)
      rowFiles.append(end ? Self.endOfSequence : UInt32(clamping: file))
      rowLines.append(UInt32(clamping: max(0, line)))
    }
    cursor.offset = programStart
    let program = ByteCursor(UnsafeRawBufferPointer(rebasing: sections.line[0..<end]), offset: programStart)
    cursor = program
    while !cursor.atEnd {
      let opcode = cursor.u8()
      if opcode >= opcodeBase {
        let adjusted = UInt64(opcode - opcodeBase)
        address &+= (adjusted / lineRange) &* minimumInstructionLength
        line &+= lineBase &+ Int64(adjusted % lineRange)
        emit(end: false)
        continue
      }
      switch opcode {
      case 0:  // extended
        let size = cursor.uleb()
        guard size > 0, let next = cursor.offset(after: size) else {
          cursor.fail()
          break
        }
        switch cursor.u8() {
        case 1:  // end_sequence
          emit(end: true)
          // Code the linker discarded keeps address 0 (or a tombstone):
          // its sequences would shadow real ones.
          let start = rowAddresses[sequenceStart]
          if start != 0 && start < 0xFFFF_FFFF_FFFF_FFFE && rowAddresses.count - sequenceStart > 1 {
            sequences.append((start, sequenceStart..<rowAddresses.count))
          }
          sequenceStart = rowAddresses.count
          address = 0
          file = 1
          line = 1
        case 2: address = cursor.unsigned(size: Int(size - 1))  // set_address (size − 1 bytes)
        default: break  // define_file, set_discriminator, vendor extensions
        }
        cursor.offset = next
      case 1: emit(end: false)  // copy
      case 2: address &+= cursor.uleb() &* minimumInstructionLength  // advance_pc
      case 3: line &+= cursor.sleb()  // advance_line
      case 4: file = cursor.uleb()  // set_file
      case 8: address &+= ((255 - UInt64(opcodeBase)) / lineRange) &* minimumInstructionLength  // const_add_pc
      case 9: address &+= UInt64(cursor.u16())  // fixed_advance_pc
      default:
        // set_column, negate_stmt, …: skip their uleb operands.
        for _ in 0..<Int(standardLengths[Int(opcode)]) { _ = cursor.uleb() }
      }
    }
    if version < 5 {
      // File numbers are 1-based before DWARF 5; make them indexes.
      for index in rowFiles.indices where rowFiles[index] != Self.endOfSequence { rowFiles[index] &-= 1 }
    }
    sequences.sort { $0.start < $1.start }
    addresses.reserveCapacity(rowAddresses.count)
    files.reserveCapacity(rowAddresses.count)
    lines.reserveCapacity(rowAddresses.count)
    for sequence in sequences {
      // A sequence overlapping the one before it (duplicate code) is dropped.
      if let last = addresses.last, sequence.start < last { continue }
      for row in sequence.rows {
        addresses.append(rowAddresses[row])
        files.append(rowFiles[row])
        lines.append(rowLines[row])
      }
    }
  }

  /// DWARF 2–4: include_directories (strings, then an empty one), then
  /// file_names (name string, directory uleb, mtime uleb, length uleb;
  /// an empty name ends). Directory 0 is the compilation directory.
  private static func fileTableV4(_ cursor: inout ByteCursor, unit: DWARFUnit) -> [String] {
    var directories = [unit.compDir]
    while !cursor.atEnd {
      let directory = cursor.cString()
      if directory.isEmpty { break }
      directories.append(join(unit.compDir, directory))
    }
    var paths: [String] = []
    while !cursor.atEnd {
      let name = cursor.cString()
      if name.isEmpty { break }
      let directory = Int(clamping: cursor.uleb())
      _ = cursor.uleb()
      _ = cursor.uleb()
      paths.append(join(directory < directories.count ? directories[directory] : "", name))
    }
    return paths
  }

  /// DWARF 5: formats, counts and entries for directories, then files.
  private static func fileTableV5(
    _ cursor: inout ByteCursor, offsetSize: Int, unit: DWARFUnit, sections: DWARFSections
  ) -> [String] {
    func entries() -> [(path: String, directory: Int)] {
      let formatCount = Int(cursor.u8())
      var formats: [(UInt64, UInt64)] = []
      for _ in 0..<formatCount { formats.append((cursor.uleb(), cursor.uleb())) }
      let count = cursor.uleb()
      guard !cursor.failed, count < 1 << 24 else {
        cursor.fail()
        return []
      }
      var result: [(String, Int)] = []
      for _ in 0..<Int(count) {
        var path = ""
        var directory = 0
        for (content, form) in formats {
          let value = unit.readValue(.init(attribute: content, form: form, implicitConst: 0), &cursor, sections)
          if content == 1 { path = unit.string(value, sections) ?? "" }  // DW_LNCT_path
          if content == 2 { directory = Int(clamping: value.number ?? 0) }  // DW_LNCT_directory_index
        }
        if cursor.failed { return result }
        result.append((path, directory))
      }
      return result
    }
    let directories = entries().map { join(unit.compDir, $0.path) }
    return entries().map { join($0.directory < directories.count ? directories[$0.directory] : "", $0.path) }
  }

  static func join(_ directory: String, _ name: String) -> String {
    if name.hasPrefix("/") || directory.isEmpty { return name }
    return directory.hasSuffix("/") ? directory + name : directory + "/" + name
  }
}
