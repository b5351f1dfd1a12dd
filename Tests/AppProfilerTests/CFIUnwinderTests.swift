@testable import AppProfiler
import CAppProfiler
import Testing

/// The handler's CFI walk over a synthetic stack and hand-made rows.
@Suite struct CFIUnwinderTests {
  func row(_ pc: UInt64, _ kind: Int, cfa: Int32 = 0, fp: Int16 = Int16(CAP_FP_SAME)) -> cap_unwind_row {
    cap_unwind_row(pc: pc, cfa_offset: cfa, fp_offset: fp, kind: UInt8(kind), r14_slot: 0)
  }

  /// Leaf A in its epilogue (`pop rbp` done, at `ret`), called by B (rbp
  /// frame), called by C (the outermost frame).
  @Test func epilogueFramePointerFrameAndRoot() {
    var stack = [UInt64](repeating: 0, count: 64)
    stack.withUnsafeMutableBufferPointer { buffer in
      let base = UInt64(UInt(bitPattern: buffer.baseAddress!))
      let rsp = base + 8 * 10
      let bFrame = base + 8 * 20
      buffer[10] = 0x2005  // A's return address into B
      buffer[9] = 0xDEAD  // A's stale saved-rbp slot, below rsp
      buffer[20] = base + 8 * 30  // B's saved rbp (C's frame)
      buffer[21] = 0x3005  // B's return address into C
      let rows = [
        row(0x1000, CAP_ROW_SP, cfa: 8, fp: -16),  // A at ret: CFA = rsp + 8, stale rbp rule
        row(0x1010, CAP_ROW_NONE),
        row(0x2000, CAP_ROW_FP, cfa: 16, fp: -16),  // B: CFA = rbp + 16
        row(0x2010, CAP_ROW_NONE),
        row(0x3000, CAP_ROW_ROOT),
        row(0x3010, CAP_ROW_NONE),
      ]
      withExtendedLifetime(UnwindTable(rows: rows)!) { table in
        var image = table.image
        var frames = [UInt64](repeating: 0, count: 8)
        var truncated: Int32 = 0
        var complete: Int32 = 0
        let depth = cap_unwind_cfi_for_test(
          &image, 1, 0x1008, rsp, bFrame, rsp, base + 8 * 64, &frames, 8, &truncated, &complete)
        #expect(Array(frames.prefix(Int(depth))) == [0x1008, 0x2005, 0x3005])
        #expect(complete == 1)
        #expect(truncated == 0)
      }
    }
  }

  @Test func readsStayInsideTheStack() {
    var stack = [UInt64](repeating: 0, count: 16)
    stack.withUnsafeMutableBufferPointer { buffer in
      let base = UInt64(UInt(bitPattern: buffer.baseAddress!))
      let rows = [row(0x1000, CAP_ROW_SP, cfa: 4096), row(0x1010, CAP_ROW_NONE)]
      withExtendedLifetime(UnwindTable(rows: rows)!) { table in
        var image = table.image
        var frames = [UInt64](repeating: 0, count: 8)
        var truncated: Int32 = 0
        var complete: Int32 = 0
        // CFA far beyond the stack's end: the walk stops after the leaf, no read.
        let depth = cap_unwind_cfi_for_test(&image, 1, 0x1004, base, 0, base, base + 128, &frames, 8, &truncated, &complete)
        #expect(depth == 1)
        #expect(complete == 0)
      }
    }
  }

  @Test func deepStacksAreCutAndFlagged() {
    // A frame-pointer chain of 20 frames without CFI; room for 5.
    var stack = [UInt64](repeating: 0, count: 64)
    stack.withUnsafeMutableBufferPointer { buffer in
      let base = UInt64(UInt(bitPattern: buffer.baseAddress!))
      for frame in 0..<20 {
        buffer[frame * 2] = base + UInt64(frame * 2 + 2) * 8
        buffer[frame * 2 + 1] = 0x5000 + UInt64(frame)
      }
      var frames = [UInt64](repeating: 0, count: 5)
      var truncated: Int32 = 0
      var complete: Int32 = 0
      let depth = cap_unwind_cfi_for_test(nil, 0, 0x4000, base, base, base, base + 8 * 64, &frames, 5, &truncated, &complete)
      #expect(depth == 5)
      #expect(truncated == 1)
      #expect(frames == [0x4000, 0x5000, 0x5001, 0x5002, 0x5003])
    }
  }
}
