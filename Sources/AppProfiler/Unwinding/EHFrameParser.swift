import CAppProfiler

/// Compiles an image's `.eh_frame` (DWARF call frame information, as
/// loaded in memory) into sorted `cap_unwind_row`s for the signal handler.
///
/// Record layout (LSB / DWARF 4 §6.4, .eh_frame flavour):
///
///     length u32 (0xffffffff: u64 follows)   0 ends the section
///     id     u32: 0 for a CIE; else the distance back to this FDE's CIE
///     CIE: version u8, augmentation "zR…", code alignment uleb,
///          data alignment sleb, return register (u8 or uleb),
///          augmentation data ('R' pointer encoding, 'P' personality,
///          'L' LSDA encoding, 'S' signal frame), initial instructions
///     FDE: pc_begin and pc_range (CIE's 'R' encoding), augmentation data,
///          instructions
///
/// Only what the x86_64 handler needs is kept: the CFA rule (register rsp
/// or rbp plus an offset), where rbp and r14 (the Swift async context
/// register, docs/async-stacks.md) were saved, whether the return address
/// is undefined (the outermost frame), PLT stubs (CFA expressions) and
/// signal trampolines ('S'). Anything else becomes a NONE row, where the
/// handler falls back to a frame-pointer step.
struct EHFrameParser {
  /// DWARF register numbers on x86_64.
  enum Register {
    static let rbp: UInt64 = 6
    static let rsp: UInt64 = 7
    static let r14: UInt64 = 14
    static let returnAddress: UInt64 = 16
  }

  struct Malformed: Error {}

  let memory: UnsafeRawBufferPointer
  /// Runtime address of memory[0] (for pc-relative pointers).
  let base: UInt64

  init(memory: UnsafeRawBufferPointer, runtimeAddress: UInt64) {
    self.memory = memory
    self.base = runtimeAddress
  }

  // MARK: Reading

  struct Cursor {
    var offset: Int
  }

  func u8(_ c: inout Cursor) throws -> UInt8 {
    guard c.offset < memory.count else { throw Malformed() }
    defer { c.offset += 1 }
    return memory[c.offset]
  }

  func fixed<T: FixedWidthInteger>(_ c: inout Cursor, _ type: T.Type) throws -> T {
    let size = MemoryLayout<T>.size
    guard c.offset >= 0, c.offset + size <= memory.count else { throw Malformed() }
    defer { c.offset += size }
    return memory.loadUnaligned(fromByteOffset: c.offset, as: T.self)
  }

  func uleb(_ c: inout Cursor) throws -> UInt64 {
    var result: UInt64 = 0
    var shift: UInt64 = 0
    while true {
      let byte = try u8(&c)
      if shift < 64 { result |= UInt64(byte & 0x7F) << shift }
      shift += 7
      if byte & 0x80 == 0 { return result }
    }
  }

  func sleb(_ c: inout Cursor) throws -> Int64 {
    var result: Int64 = 0
    var shift: Int64 = 0
    var byte: UInt8
    repeat {
      byte = try u8(&c)
      if shift < 64 { result |= Int64(byte & 0x7F) << shift }
      shift += 7
    } while byte & 0x80 != 0
    if shift < 64 && byte & 0x40 != 0 { result |= -(Int64(1) << shift) }
    return result
  }

  /// A pointer in DW_EH_PE encoding (format in the low nibble, application
  /// in bits 4–6; indirect pointers are not followed: the handler never needs them).
  func pointer(_ c: inout Cursor, encoding: UInt8) throws -> UInt64 {
    if encoding == 0xFF { return 0 }  // DW_EH_PE_omit
    let position = base &+ UInt64(c.offset)
    var value: UInt64
    switch encoding & 0x0F {
    case 0x00: value = try fixed(&c, UInt64.self)
    case 0x01: value = try uleb(&c)
    case 0x02: value = UInt64(try fixed(&c, UInt16.self))
    case 0x03: value = UInt64(try fixed(&c, UInt32.self))
    case 0x04: value = try fixed(&c, UInt64.self)
    case 0x09: value = UInt64(bitPattern: try sleb(&c))
    case 0x0A: value = UInt64(bitPattern: Int64(try fixed(&c, Int16.self)))
    case 0x0B: value = UInt64(bitPattern: Int64(try fixed(&c, Int32.self)))
    case 0x0C: value = try fixed(&c, UInt64.self)
    default: throw Malformed()
    }
    switch encoding & 0x70 {
    case 0x00: break
    case 0x10: value = value &+ position  // pcrel
    default: break  // textrel/datarel/funcrel: unused by the images we read
    }
    return value
  }

  // MARK: CIEs and FDEs

  struct CIE {
    var codeAlignment: UInt64
    var dataAlignment: Int64
    var returnRegister: UInt64
    var pointerEncoding: UInt8 = 0
    var hasAugmentationData = false
    var isSignalFrame = false
    var instructions: Range<Int>
  }

  private func parseCIE(at start: Int, end: Int) throws -> CIE {
    var c = Cursor(offset: start)
    let version = try u8(&c)
    var augmentation: [UInt8] = []
    while true {
      let byte = try u8(&c)
      if byte == 0 { break }
      augmentation.append(byte)
    }
    let codeAlignment = try uleb(&c)
    let dataAlignment = try sleb(&c)
    let returnRegister = version == 1 ? UInt64(try u8(&c)) : try uleb(&c)
    var cie = CIE(
      codeAlignment: codeAlignment, dataAlignment: dataAlignment, returnRegister: returnRegister, instructions: 0..<0)
    if augmentation.first == UInt8(ascii: "z") {
      cie.hasAugmentationData = true
      let length = Int(try uleb(&c))
      let dataEnd = c.offset + length
      for letter in augmentation.dropFirst() {
        switch letter {
        case UInt8(ascii: "R"): cie.pointerEncoding = try u8(&c)
        case UInt8(ascii: "P"):
          let encoding = try u8(&c)
          _ = try pointer(&c, encoding: encoding & 0x7F)
        case UInt8(ascii: "L"): _ = try u8(&c)
        case UInt8(ascii: "S"): cie.isSignalFrame = true
        default: break
        }
      }
      c.offset = dataEnd
    }
    guard c.offset <= end else { throw Malformed() }
    cie.instructions = c.offset..<end
    return cie
  }

  /// Every FDE's rows in handler form, sorted and normalized
  /// (``UnwindTable/normalized(_:_:)``).
  func compile() -> [cap_unwind_row] {
    let rows = rawRows()
    var result: [cap_unwind_row] = []
    _ = UnwindTable.normalized(rows) { result.append($0) }
    return result
  }

  /// Every FDE's rows in handler form, in the section's order, in mapped
  /// memory (an image's rows are millions for a moment).
  func rawRows() -> MappedArray<cap_unwind_row> {
    let rows = MappedArray<cap_unwind_row>()
    // Address space for the most rows the section could hold (a row needs
    // at least one byte of CFA program or FDE); only the rows written touch
    // memory, and the array never moves.
    _ = rows.reserve(memory.count + 1)
    var cies: [Int: CIE] = [:]
    var offset = 0
    while offset + 4 <= memory.count {
      var c = Cursor(offset: offset)
      guard var length = try? UInt64(fixed(&c, UInt32.self)) else { break }
      if length == 0 { break }  // terminator
      if length == 0xFFFF_FFFF {
        guard let long = try? fixed(&c, UInt64.self) else { break }
        length = long
      }
      let contentStart = c.offset
      guard length <= UInt64(memory.count - contentStart) else { break }
      let end = contentStart + Int(length)
      defer { offset = end }
      guard let id = try? fixed(&c, UInt32.self) else { break }
      if id == 0 {
        if let cie = try? parseCIE(at: c.offset, end: end) { cies[contentStart - 4 - (length > 0xFFFF_FFFE ? 8 : 0)] = cie }
        continue
      }
      // The CIE pointer is the distance from this field back to the CIE.
      let ciePosition = contentStart - Int(id)
      let cie: CIE
      if let known = cies[ciePosition] {
        cie = known
      } else {
        var cc = Cursor(offset: ciePosition)
        guard let cieLength = try? fixed(&cc, UInt32.self), cieLength != 0, cieLength != 0xFFFF_FFFF,
          let cieID = try? fixed(&cc, UInt32.self), cieID == 0,
          let parsed = try? parseCIE(at: cc.offset, end: ciePosition + 4 + Int(cieLength))
        else { continue }
        cies[ciePosition] = parsed
        cie = parsed
      }
      guard let pcBegin = try? pointer(&c, encoding: cie.pointerEncoding),
        let pcRange = try? pointer(&c, encoding: cie.pointerEncoding & 0x0F)
      else { continue }
      if cie.hasAugmentationData {
        guard let length = try? uleb(&c) else { continue }
        c.offset += Int(length)
      }
      guard pcBegin != 0, pcRange > 0, c.offset <= end else { continue }
      if cie.isSignalFrame {
        rows.append(cap_unwind_row(pc: pcBegin, cfa_offset: 0, fp_offset: Int16(CAP_FP_SAME), kind: UInt8(CAP_ROW_SIGNAL), r14_slot: 0))
      } else {
        run(cie: cie, fde: c.offset..<end, start: pcBegin, into: rows)
      }
      // Mark the end of the FDE: past it, this FDE's rules no longer hold.
      rows.append(cap_unwind_row(pc: pcBegin &+ pcRange, cfa_offset: 0, fp_offset: Int16(CAP_FP_SAME), kind: UInt8(CAP_ROW_NONE), r14_slot: 0))
    }
    return rows
  }
}
