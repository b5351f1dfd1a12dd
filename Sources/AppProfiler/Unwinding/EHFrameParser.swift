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

  private let memory: UnsafeRawBufferPointer
  /// Runtime address of memory[0] (for pc-relative pointers).
  private let base: UInt64

  init(memory: UnsafeRawBufferPointer, runtimeAddress: UInt64) {
    self.memory = memory
    self.base = runtimeAddress
  }

  // MARK: Reading

  private struct Cursor {
    var offset: Int
  }

  private func u8(_ c: inout Cursor) throws -> UInt8 {
    guard c.offset < memory.count else { throw Malformed() }
    defer { c.offset += 1 }
    return memory[c.offset]
  }

  private func fixed<T: FixedWidthInteger>(_ c: inout Cursor, _ type: T.Type) throws -> T {
    let size = MemoryLayout<T>.size
    guard c.offset >= 0, c.offset + size <= memory.count else { throw Malformed() }
    defer { c.offset += size }
    return memory.loadUnaligned(fromByteOffset: c.offset, as: T.self)
  }

  private func uleb(_ c: inout Cursor) throws -> UInt64 {
    var result: UInt64 = 0
    var shift: UInt64 = 0
    while true {
      let byte = try u8(&c)
      if shift < 64 { result |= UInt64(byte & 0x7F) << shift }
      shift += 7
      if byte & 0x80 == 0 { return result }
    }
  }

  private func sleb(_ c: inout Cursor) throws -> Int64 {
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
  private func pointer(_ c: inout Cursor, encoding: UInt8) throws -> UInt64 {
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

  private struct CIE {
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

  // MARK: The CFA program

  private struct State: Equatable {
    var cfaRegister: UInt64 = Register.rsp
    var cfaOffset: Int64 = 8
    var cfaIsExpression = false
    /// Offset from the CFA where rbp is saved; nil: same value (unchanged).
    var rbpOffset: Int64? = nil
    var rbpUnknown = false
    /// The same for r14.
    var r14Offset: Int64? = nil
    var r14Unknown = false
    var returnAddressUndefined = false

    /// `register` now has a rule the handler cannot follow.
    mutating func untrack(_ register: UInt64) {
      if register == Register.rbp { rbpUnknown = true }
      if register == Register.r14 { r14Unknown = true }
    }

    /// `register` is back to its rule in `initial`.
    mutating func restore(_ register: UInt64, from initial: State) {
      if register == Register.rbp { rbpOffset = initial.rbpOffset; rbpUnknown = initial.rbpUnknown }
      if register == Register.r14 { r14Offset = initial.r14Offset; r14Unknown = initial.r14Unknown }
      if register == Register.returnAddress { returnAddressUndefined = initial.returnAddressUndefined }
    }
  }

  private func row(_ state: State, pc: UInt64) -> cap_unwind_row {
    var kind = UInt8(CAP_ROW_NONE)
    var cfaOffset: Int32 = 0
    if state.returnAddressUndefined {
      kind = UInt8(CAP_ROW_ROOT)
    } else if state.cfaIsExpression {
      kind = UInt8(CAP_ROW_PLT)
    } else if !state.rbpUnknown, let offset = Int32(exactly: state.cfaOffset) {
      if state.cfaRegister == Register.rsp {
        kind = UInt8(CAP_ROW_SP)
        cfaOffset = offset
      } else if state.cfaRegister == Register.rbp {
        kind = UInt8(CAP_ROW_FP)
        cfaOffset = offset
      }
    }
    var fpOffset = Int16(CAP_FP_SAME)
    if let saved = state.rbpOffset, let narrow = Int16(exactly: saved) { fpOffset = narrow }
    return cap_unwind_row(
      pc: pc, cfa_offset: cfaOffset, fp_offset: fpOffset, kind: kind, r14_slot: Self.r14Slot(state))
  }

  /// r14's rule as the row stores it: CFA + 8 × slot, unchanged, or unknown.
  private static func r14Slot(_ state: State) -> Int8 {
    if state.r14Unknown { return Int8(CAP_R14_UNKNOWN) }
    guard let offset = state.r14Offset else { return Int8(CAP_R14_SAME) }
    guard offset % 8 == 0, let slot = Int8(exactly: offset / 8), slot != Int8(CAP_R14_UNKNOWN), slot != 0 else {
      return Int8(CAP_R14_UNKNOWN)
    }
    return slot
  }

  private func run(cie: CIE, fde: Range<Int>, start: UInt64, into rows: MappedArray<cap_unwind_row>) {
    var initial = State()
    var state = State()
    var location = start
    var stack: [State] = []
    var emitted: State? = nil

    func emit() {
      if emitted != state {
        rows.append(row(state, pc: location))
        emitted = state
      }
    }

    func execute(_ range: Range<Int>, isCIE: Bool) {
      var c = Cursor(offset: range.lowerBound)
      func setRule(_ register: UInt64, offset: Int64?) {
        if register == Register.rbp { state.rbpOffset = offset; state.rbpUnknown = false }
        if register == Register.r14 { state.r14Offset = offset; state.r14Unknown = false }
      }
      do {
        while c.offset < range.upperBound {
          let opcode = try u8(&c)
          let high = opcode & 0xC0
          let low = UInt64(opcode & 0x3F)
          if high == 0x40 {  // advance_loc
            if !isCIE { emit() }
            location &+= low * cie.codeAlignment
            continue
          }
          if high == 0x80 {  // offset
            let offset = Int64(try uleb(&c)) * cie.dataAlignment
            setRule(low, offset: offset)
            continue
          }
          if high == 0xC0 {  // restore
            state.restore(low, from: initial)
            continue
          }
          switch opcode {
          case 0x00: break  // nop
          case 0x01:  // set_loc
            if !isCIE { emit() }
            location = try pointer(&c, encoding: cie.pointerEncoding)
          case 0x02, 0x03, 0x04:  // advance_loc1/2/4
            let delta: UInt64
            switch opcode {
            case 0x02: delta = UInt64(try u8(&c))
            case 0x03: delta = UInt64(try fixed(&c, UInt16.self))
            default: delta = UInt64(try fixed(&c, UInt32.self))
            }
            if !isCIE { emit() }
            location &+= delta * cie.codeAlignment
          case 0x05:  // offset_extended
            let register = try uleb(&c)
            setRule(register, offset: Int64(try uleb(&c)) * cie.dataAlignment)
          case 0x06:  // restore_extended
            state.restore(try uleb(&c), from: initial)
          case 0x07:  // undefined
            let register = try uleb(&c)
            if register == cie.returnRegister { state.returnAddressUndefined = true }
            state.untrack(register)
          case 0x08:  // same_value
            setRule(try uleb(&c), offset: nil)
          case 0x09:  // register: rbp lives in another register — not trackable
            let register = try uleb(&c)
            _ = try uleb(&c)
            state.untrack(register)
          case 0x0A: stack.append(state)  // remember_state
          case 0x0B:  // restore_state
            if let saved = stack.popLast() { state = saved }
          case 0x0C:  // def_cfa
            state.cfaRegister = try uleb(&c)
            state.cfaOffset = Int64(try uleb(&c))
            state.cfaIsExpression = false
          case 0x0D:  // def_cfa_register
            state.cfaRegister = try uleb(&c)
            state.cfaIsExpression = false
          case 0x0E:  // def_cfa_offset
            state.cfaOffset = Int64(try uleb(&c))
          case 0x0F:  // def_cfa_expression (PLT stubs)
            let length = Int(try uleb(&c))
            c.offset += length
            state.cfaIsExpression = true
          case 0x10:  // expression: rbp at a computed address — not trackable
            let register = try uleb(&c)
            let length = Int(try uleb(&c))
            c.offset += length
            state.untrack(register)
          case 0x11:  // offset_extended_sf
            let register = try uleb(&c)
            setRule(register, offset: try sleb(&c) * cie.dataAlignment)
          case 0x12:  // def_cfa_sf
            state.cfaRegister = try uleb(&c)
            state.cfaOffset = try sleb(&c) * cie.dataAlignment
            state.cfaIsExpression = false
          case 0x13:  // def_cfa_offset_sf
            state.cfaOffset = try sleb(&c) * cie.dataAlignment
          case 0x14:  // val_offset
            let register = try uleb(&c)
            _ = try uleb(&c)
            state.untrack(register)
          case 0x15:  // val_offset_sf
            let register = try uleb(&c)
            _ = try sleb(&c)
            state.untrack(register)
          case 0x16:  // val_expression
            let register = try uleb(&c)
            let length = Int(try uleb(&c))
            c.offset += length
            state.untrack(register)
          case 0x2E: _ = try uleb(&c)  // GNU_args_size
          case 0x2F:  // GNU_negative_offset_extended
            let register = try uleb(&c)
            setRule(register, offset: -Int64(try uleb(&c)) * cie.dataAlignment)
          default:
            throw Malformed()  // unknown opcode: stop here, keep what was emitted
          }
        }
      } catch {
        return
      }
    }

    execute(cie.instructions, isCIE: true)
    initial = state
    execute(fde, isCIE: false)
    emit()
  }
}
