import CAppProfiler

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The compiled unwind rows of one image in the handler's compact form —
/// per row a 32-bit pc offset and a 16-bit index into the image's distinct
/// rules, 6 bytes instead of the parser's 16 — in memory of its own that
/// does not move (the signal handler holds raw pointers to it during a
/// session) and goes back to the system when the table is dropped. The
/// parser's rows, sort keys and the compact arrays while they grow are in
/// mapped memory too (``MappedArray``): building the tables of a service's
/// images leaves nothing behind in malloc's arenas.
final class UnwindTable: @unchecked Sendable {
  let start: UInt64
  let end: UInt64
  private let pcs: MappedArray<UInt32>
  private let ruleIndices: MappedArray<UInt16>
  private let rules: MappedArray<cap_unwind_rule>

  var count: Int { pcs.count }
  var ruleCount: Int { rules.count }

  /// Reads `.eh_frame` of a loaded image through its `.eh_frame_hdr`:
  ///   version u8, eh_frame_ptr encoding u8, fde_count encoding u8,
  ///   table encoding u8, eh_frame_ptr (encoded, usually pc-relative sdata4)
  static func build(for image: LoadedImage) -> UnwindTable? {
    guard let rows = parse(image) else { return nil }
    return UnwindTable(raw: rows)
  }

  /// The parser's rows of `image` in section order; nil without a readable
  /// `.eh_frame`.
  static func parse(_ image: LoadedImage) -> MappedArray<cap_unwind_row>? {
    guard image.ehFrameHeader != 0,
      let header = UnsafeRawPointer(bitPattern: UInt(image.ehFrameHeader)),
      header.load(as: UInt8.self) == 1
    else { return nil }
    let encoding = header.load(fromByteOffset: 1, as: UInt8.self)
    let field = image.ehFrameHeader + 4
    let ehFrame: UInt64
    switch encoding {
    case 0x1B:  // pcrel | sdata4
      ehFrame = field &+ UInt64(bitPattern: Int64(header.loadUnaligned(fromByteOffset: 4, as: Int32.self)))
    case 0x03:  // udata4
      ehFrame = UInt64(header.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
    case 0x00, 0x04:  // absptr, udata8
      ehFrame = header.loadUnaligned(fromByteOffset: 4, as: UInt64.self)
    default:
      return nil
    }
    // Never read past the loaded segment that holds .eh_frame.
    guard let segment = image.loadSegments.first(where: { $0.contains(ehFrame) }),
      let start = UnsafeRawPointer(bitPattern: UInt(ehFrame))
    else { return nil }
    let memory = UnsafeRawBufferPointer(start: start, count: Int(segment.upperBound - ehFrame))
    return EHFrameParser(memory: memory, runtimeAddress: ehFrame).rawRows()
  }

  /// Rows already in order (tests).
  convenience init?(rows: [cap_unwind_row]) {
    let raw = MappedArray<cap_unwind_row>()
    for row in rows { guard raw.append(row) else { return nil } }
    self.init(raw: raw)
  }

  /// nil when there are no rows or they cannot take the compact form: an
  /// image spanning 4 GiB or more, more than 65,536 distinct rules (none
  /// seen), or no memory. Such an image is walked with frame pointers, as
  /// one without `.eh_frame`.
  init?(raw: MappedArray<cap_unwind_row>) {
    let pcs = MappedArray<UInt32>()
    let ruleIndices = MappedArray<UInt16>()
    let rules = MappedArray<cap_unwind_rule>()
    var indexOfRule: [UInt64: UInt16] = [:]
    var first: UInt64? = nil
    var last: UInt64 = 0
    var previous: UInt64? = nil
    var failed = false
    // Address space for every row (pages are touched only as rows are kept).
    guard pcs.reserve(raw.count), ruleIndices.reserve(raw.count) else { return nil }
    let complete = Self.normalized(raw) { row in
      guard !failed else { return }
      let start = first ?? row.pc
      first = start
      last = row.pc
      // A row repeating the rule before it changes no lookup.
      let rule = cap_unwind_rule(cfa_offset: row.cfa_offset, fp_offset: row.fp_offset, kind: row.kind, r14_slot: row.r14_slot)
      let key = Self.key(rule)
      guard key != previous else { return }
      previous = key
      var index = indexOfRule[key]
      if index == nil, rules.count <= Int(UInt16.max), rules.append(rule) {
        index = UInt16(rules.count - 1)
        indexOfRule[key] = index
      }
      guard let index, pcs.append(UInt32(row.pc &- start)), ruleIndices.append(index) else {
        failed = true
        return
      }
    }
    guard complete, !failed, let first, pcs.count > 0 else { return nil }
    pcs.shrinkToFit()
    ruleIndices.shrinkToFit()
    rules.shrinkToFit()
    self.pcs = pcs
    self.ruleIndices = ruleIndices
    self.rules = rules
    start = first
    end = last &+ 1
  }

  var byteCount: Int {
    pcs.count * MemoryLayout<UInt32>.stride + ruleIndices.count * MemoryLayout<UInt16>.stride + rules.count
      * MemoryLayout<cap_unwind_rule>.stride
  }

  /// The handler's view; valid while this table lives.
  var image: cap_unwind_image {
    cap_unwind_image(
      start: start, end: end,
      row_pcs: UnsafePointer(pcs.buffer.baseAddress), row_rules: UnsafePointer(ruleIndices.buffer.baseAddress),
      count: UInt64(pcs.count),
      rules: UnsafePointer(rules.buffer.baseAddress), rule_count: UInt64(rules.count))
  }

  private static func key(_ rule: cap_unwind_rule) -> UInt64 {
    UInt64(UInt32(bitPattern: rule.cfa_offset)) | UInt64(UInt16(bitPattern: rule.fp_offset)) << 32
      | UInt64(rule.kind) << 48 | UInt64(UInt8(bitPattern: rule.r14_slot)) << 56
  }

  // MARK: Sorting and normalizing

  /// Calls `body` with `raw`'s rows sorted by pc, where rows share a pc the
  /// last wins (except that an FDE's end marker never replaces a real row:
  /// an FDE starting where another ends), and NONE rows that follow NONE
  /// rows dropped. False (nothing called) when the rows span 4 GiB or more.
  static func normalized(_ raw: MappedArray<cap_unwind_row>, _ body: (cap_unwind_row) -> Void) -> Bool {
    let rows = raw.buffer
    guard let lowest = rows.lazy.map(\.pc).min(), let highest = rows.lazy.map(\.pc).max(),
      highest &- lowest < 1 << 32, rows.count < 1 << 32
    else { return rows.isEmpty }
    // (pc offset, position): unique keys, so any sort keeps the section's
    // order among rows of one pc.
    let keys = MappedArray<UInt64>()
    guard keys.reserve(rows.count) else { return false }
    for (position, row) in rows.enumerated() { keys.append((row.pc &- lowest) << 32 | UInt64(position)) }
    let sorted = keys.buffer
    if !zip(sorted, sorted.dropFirst()).allSatisfy({ $0 < $1 }) {
      let scratch = MappedArray<UInt64>()
      guard scratch.reserve(rows.count) else { return false }
      for _ in 0..<rows.count { scratch.append(0) }
      radixSort(sorted, scratch: scratch.buffer)
    }
    let none = UInt8(CAP_ROW_NONE)
    var pending: cap_unwind_row? = nil
    for key in sorted {
      let row = rows[Int(key & 0xFFFF_FFFF)]
      if let last = pending, last.pc == row.pc {
        if row.kind != none || last.kind == none { pending = row }
        continue
      }
      if row.kind == none, pending?.kind == none { continue }
      if let last = pending { body(last) }
      pending = row
    }
    if let last = pending { body(last) }
    return true
  }

  /// By the pc offset (the upper 32 bits), least significant byte first;
  /// each pass is stable, so rows of one pc keep the section's order (the
  /// lower 32 bits). Four passes: the result ends in `keys`.
  private static func radixSort(_ keys: UnsafeMutableBufferPointer<UInt64>, scratch: UnsafeMutableBufferPointer<UInt64>) {
    var source = keys
    var target = scratch
    var starts = [Int](repeating: 0, count: 257)
    for shift in stride(from: UInt64(32), to: 64, by: 8) {
      for index in starts.indices { starts[index] = 0 }
      for key in source { starts[Int((key >> shift) & 0xFF) + 1] += 1 }
      for digit in 1...256 { starts[digit] += starts[digit - 1] }
      for key in source {
        let digit = Int((key >> shift) & 0xFF)
        target[starts[digit]] = key
        starts[digit] += 1
      }
      swap(&source, &target)
    }
  }
}
