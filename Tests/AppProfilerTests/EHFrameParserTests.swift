@testable import AppProfiler
import CAppProfiler
import Testing

/// `.eh_frame` bytes assembled by hand: a CIE and FDEs with known rules.
struct EHFrameBuilder {
  var bytes: [UInt8] = []

  static func uleb(_ value: UInt64) -> [UInt8] {
    var value = value
    var out: [UInt8] = []
    repeat {
      var byte = UInt8(value & 0x7F)
      value >>= 7
      if value != 0 { byte |= 0x80 }
      out.append(byte)
    } while value != 0
    return out
  }

  static func u32(_ value: UInt32) -> [UInt8] { withUnsafeBytes(of: value.littleEndian, Array.init) }

  /// A CIE: version 1, augmentation `augmentation`, code align 1, data align
  /// -8, return address register 16, FDE pointers udata4 (absolute).
  /// Returns its offset.
  mutating func cie(augmentation: String = "zR", instructions: [UInt8]) -> Int {
    let offset = bytes.count
    var body: [UInt8] = Self.u32(0) + [1] + Array(augmentation.utf8) + [0] + Self.uleb(1) + [0x78] + [16]
    body += Self.uleb(1) + [0x03]  // augmentation data: 'R' = udata4
    body += instructions
    bytes += Self.u32(UInt32(body.count)) + body
    return offset
  }

  mutating func fde(cie: Int, start: UInt32, length: UInt32, instructions: [UInt8]) {
    let pointerField = bytes.count + 4
    var body: [UInt8] = Self.u32(UInt32(pointerField - cie)) + Self.u32(start) + Self.u32(length) + Self.uleb(0)
    body += instructions
    bytes += Self.u32(UInt32(body.count)) + body
  }

  mutating func terminate() { bytes += Self.u32(0) }
}

@Suite struct EHFrameParserTests {
  func compile(_ builder: EHFrameBuilder) -> [cap_unwind_row] {
    builder.bytes.withUnsafeBytes { EHFrameParser(memory: $0, runtimeAddress: 0x50_0000).compile() }
  }

  func describe(_ row: cap_unwind_row) -> String {
    let fp = row.fp_offset == Int16(CAP_FP_SAME) ? "same" : String(row.fp_offset)
    return "\(String(row.pc, radix: 16)) kind=\(row.kind) cfa=\(row.cfa_offset) fp=\(fp)"
  }

  @Test func prologueFramePointerAndEpilogue() {
    var builder = EHFrameBuilder()
    // CIE: CFA = rsp + 8, return address at CFA - 8.
    let cie = builder.cie(instructions: [0x0C, 0x07, 0x08, 0x90, 0x01])
    builder.fde(
      cie: cie, start: 0x1000, length: 0x20,
      instructions: [
        0x41, 0x0E, 0x10, 0x86, 0x02,  // +1: push rbp → CFA = rsp + 16, rbp at CFA - 16
        0x43, 0x0D, 0x06,  // +3: mov rbp, rsp → CFA = rbp + 16
        0x02, 0x1B, 0x0C, 0x07, 0x08, 0xC6,  // +27: leave → CFA = rsp + 8, rbp restored
      ])
    builder.terminate()
    let rows = compile(builder).map(describe)
    #expect(
      rows == [
        "1000 kind=1 cfa=8 fp=same",
        "1001 kind=1 cfa=16 fp=-16",
        "1004 kind=2 cfa=16 fp=-16",
        "101f kind=1 cfa=8 fp=same",
        "1020 kind=0 cfa=0 fp=same",
      ], "\(rows)")
  }

  @Test func rootSignalAndPLTFrames() {
    var builder = EHFrameBuilder()
    let plain = builder.cie(instructions: [0x0C, 0x07, 0x08, 0x90, 0x01])
    // Outermost frame: return address undefined (like _start and clone3).
    builder.fde(cie: plain, start: 0x2000, length: 0x10, instructions: [0x07, 0x10])
    // PLT: CFA from an expression.
    builder.fde(cie: plain, start: 0x3000, length: 0x30, instructions: [0x0F, 0x03, 0x77, 0x08, 0x06])
    // Signal trampoline: augmentation "zRS".
    let signal = builder.cie(augmentation: "zRS", instructions: [0x0C, 0x07, 0x08])
    builder.fde(cie: signal, start: 0x4000, length: 0x08, instructions: [])
    builder.terminate()
    let rows = compile(builder)
    func kind(at pc: UInt64) -> UInt8? { rows.last { $0.pc <= pc }?.kind }
    #expect(kind(at: 0x2004) == UInt8(CAP_ROW_ROOT))
    #expect(kind(at: 0x3010) == UInt8(CAP_ROW_PLT))
    #expect(kind(at: 0x4002) == UInt8(CAP_ROW_SIGNAL))
    #expect(kind(at: 0x4010) == UInt8(CAP_ROW_NONE))
    #expect(kind(at: 0x1000) == nil)
  }

  @Test func malformedInputYieldsNoRowsNotACrash() {
    for bytes: [UInt8] in [[], [0xFF, 0xFF, 0xFF, 0xFF], [0x10, 0, 0, 0, 1, 2], [0xF0, 0xFF, 0xFF, 0x0F, 0, 0, 0, 0]] {
      let rows = bytes.withUnsafeBytes { EHFrameParser(memory: $0, runtimeAddress: 0x1000).compile() }
      #expect(rows.isEmpty)
    }
  }

  @Test func thisProcessHasTablesForLibc() throws {
    let images = ImageMap.current()
    let libc = try #require(images.images.first { $0.path.hasSuffix("/libc.so.6") })
    let table = try #require(UnwindTable.build(for: libc))
    #expect(table.count > 1000)
    // Sorted, and the table covers libc's text.
    let pcs = UnsafeBufferPointer(start: table.image.row_pcs, count: table.count)
    #expect(zip(pcs.dropFirst(), pcs).allSatisfy { $0 > $1 })
    #expect(libc.executableSegments.contains { $0.start <= table.start && table.end <= $0.end + 1 })
  }

  func rule(of row: cap_unwind_row) -> cap_unwind_rule {
    cap_unwind_rule(cfa_offset: row.cfa_offset, fp_offset: row.fp_offset, kind: row.kind, r14_slot: row.r14_slot)
  }

  /// Sorted by pc, keeping the section's order among rows of one pc; of
  /// those the last wins unless it is an end marker after a real row; a
  /// NONE row after a NONE row goes.
  static func referenceNormalized(_ rows: [cap_unwind_row]) -> [cap_unwind_row] {
    let sorted = rows.enumerated().sorted { ($0.element.pc, $0.offset) < ($1.element.pc, $1.offset) }.map(\.element)
    var result: [cap_unwind_row] = []
    let none = UInt8(CAP_ROW_NONE)
    for row in sorted {
      if let last = result.last, last.pc == row.pc {
        if row.kind != none || last.kind == none { result[result.count - 1] = row }
        continue
      }
      if row.kind == none, result.last?.kind == none { continue }
      result.append(row)
    }
    return result
  }

  /// A section out of pc order (rows shuffled) is sorted as the plain
  /// stable sort sorts it.
  @Test func rowsOutOfOrderAreSorted() throws {
    let libc = try #require(ImageMap.current().images.first { $0.path.hasSuffix("/libc.so.6") })
    let parsed = try #require(libc.whileLoaded { UnwindTable.parse(libc) }.flatMap { $0 })
    var generator = SplitMix(seed: 36)
    var shuffled = Array(parsed.buffer)
    shuffled.shuffle(using: &generator)
    let raw = MappedArray<cap_unwind_row>()
    for row in shuffled { raw.append(row) }
    var rows: [cap_unwind_row] = []
    #expect(UnwindTable.normalized(raw) { rows.append($0) })
    let reference = Self.referenceNormalized(shuffled)
    #expect(rows.count == reference.count)
    #expect(
      zip(reference, rows).allSatisfy {
        $0.pc == $1.pc && $0.kind == $1.kind && $0.cfa_offset == $1.cfa_offset && $0.fp_offset == $1.fp_offset
          && $0.r14_slot == $1.r14_slot
      })
  }

  /// The compact table answers every lookup as the parser's rows do: at
  /// each row's first pc and at the last pc before the next row, across
  /// libc and this test binary; a pc before the first row finds nothing.
  @Test func compactTablesAnswerAsTheParsedRows() throws {
    let images = ImageMap.current()
    let chosen = images.images.filter { $0.path.hasSuffix("/libc.so.6") || $0.path.hasSuffix(".xctest") }
    #expect(chosen.count == 2)
    func same(_ rule: cap_unwind_rule?, _ row: cap_unwind_row) -> Bool {
      guard let rule else { return false }
      return rule.kind == row.kind && rule.cfa_offset == row.cfa_offset && rule.fp_offset == row.fp_offset
        && rule.r14_slot == row.r14_slot
    }
    for loaded in chosen {
      let raw = try #require(loaded.whileLoaded { UnwindTable.parse(loaded) }.flatMap { $0 })
      var rows: [cap_unwind_row] = []
      #expect(UnwindTable.normalized(raw) { rows.append($0) })
      try #require(!rows.isEmpty)
      #expect(zip(rows, rows.dropFirst()).allSatisfy { $0.pc < $1.pc })
      // The same rows as a plain stable sort and merge of the section's rows.
      let reference = Self.referenceNormalized(Array(raw.buffer))
      #expect(reference.count == rows.count)
      #expect(zip(reference, rows).allSatisfy { $0.pc == $1.pc && same(rule(of: $0), $1) })
      let table = try #require(UnwindTable(raw: raw))
      #expect(table.count <= rows.count)
      var image = table.image
      var mismatches = 0
      for (index, row) in rows.enumerated() {
        let next = index + 1 < rows.count ? rows[index + 1].pc : row.pc + 1
        for pc in [row.pc, next - 1] where !same(cap_unwind_find_for_test(&image, 1, pc)?.pointee, row) {
          mismatches += 1
        }
      }
      #expect(mismatches == 0, "\(loaded.path): \(mismatches) lookups differ")
      #expect(cap_unwind_find_for_test(&image, 1, rows[0].pc - 1) == nil)
      print("\(loaded.path): \(raw.count) parsed rows, \(rows.count) sorted, \(table.count) kept, \(table.ruleCount) rules, \(table.byteCount) bytes (\(rows.count * MemoryLayout<cap_unwind_row>.stride) as parsed)")
      withExtendedLifetime(table) {}
    }
  }
}
