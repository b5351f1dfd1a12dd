import CAppProfiler

// The CFA program of a CIE and an FDE, run into rows (DWARF 4 §6.4.2): the
// state machine of the rules the handler can follow, and the row each
// state becomes.
extension EHFrameParser {
  struct State: Equatable {
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

  func run(cie: CIE, fde: Range<Int>, start: UInt64, into rows: MappedArray<cap_unwind_row>) {
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
