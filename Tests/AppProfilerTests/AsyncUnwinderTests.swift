@testable import AppProfiler
import CAppProfiler
import Testing

/// The handler's async stitching over a synthetic stack, hand-made rows and
/// hand-made contexts: which context it takes, what it writes, and that bad
/// chains end with a marker instead of a fault.
@Suite struct AsyncUnwinderTests {
  // Code: S (a synchronous leaf, frameless) at 0x1000, A (the task's async
  // frame) at 0x2000, E (the executor) at 0x3000, resume functions at 0x4000.
  static let leafPC: UInt64 = 0x1004
  static let asyncReturn: UInt64 = 0x2005
  static let executorReturn: UInt64 = 0x3005
  static let resume1: UInt64 = 0x4000
  static let resume2: UInt64 = 0x4100
  static let completion: UInt64 = 0x4F00
  static let async = UInt64(CAP_FRAME_ASYNC)
  static let broken = UInt64(CAP_FRAME_ASYNC_BROKEN)

  func row(_ pc: UInt64, _ kind: Int, cfa: Int32 = 0) -> cap_unwind_row {
    cap_unwind_row(pc: pc, cfa_offset: cfa, fp_offset: Int16(CAP_FP_SAME), kind: UInt8(kind), r14_slot: 0)
  }

  struct Result {
    var frames: [UInt64]
    var truncated: Bool
    var stitched: Bool
    var broken: Bool
  }

  /// Walks from S. `framePointer`: A set up rbp and keeps its context at
  /// [rbp - 8] (`slot`); otherwise A is frameless and its context is r14.
  /// `contexts` builds the heap (16-byte aligned, word-addressed) given its base.
  func walk(
    framePointer: Bool, r14: (UInt64) -> UInt64, slot: (UInt64) -> UInt64 = { _ in 0 },
    maxFrames: Int = 16, executors: [cap_code_range] = [cap_code_range(start: 0x3000, end: 0x3010)],
    contexts: (UnsafeMutablePointer<UInt64>, UInt64) -> Void
  ) -> Result {
    let heap = UnsafeMutableRawPointer.allocate(byteCount: 256, alignment: 16)
    defer { heap.deallocate() }
    let words = heap.bindMemory(to: UInt64.self, capacity: 32)
    words.initialize(repeating: 0, count: 32)
    let heapBase = UInt64(UInt(bitPattern: heap))
    contexts(words, heapBase)
    var stack = [UInt64](repeating: 0, count: 64)
    return stack.withUnsafeMutableBufferPointer { buffer in
      let base = UInt64(UInt(bitPattern: buffer.baseAddress!))
      let rsp = base + 8 * 10
      buffer[10] = Self.asyncReturn  // S's return address into A
      let rbp = base + 8 * 20
      if framePointer {
        buffer[19] = slot(heapBase)  // A's context slot
        buffer[21] = Self.executorReturn
      } else {
        buffer[12] = Self.executorReturn  // A: CFA = rsp + 16
      }
      let rows = [
        row(0x1000, CAP_ROW_SP, cfa: 8),
        row(0x1010, CAP_ROW_NONE),
        framePointer ? row(0x2000, CAP_ROW_FP, cfa: 16) : row(0x2000, CAP_ROW_SP, cfa: 16),
        row(0x2010, CAP_ROW_NONE),
        row(0x3000, CAP_ROW_ROOT),
        row(0x3010, CAP_ROW_NONE),
        row(0x4000, CAP_ROW_SP, cfa: 8),
        row(0x5000, CAP_ROW_NONE),
      ]
      var memory = [cap_code_range(start: heapBase, end: heapBase + 256)]
      var executorRanges = executors
      return withExtendedLifetime(UnwindTable(rows: rows)!) { table in
        var image = table.image
        var frames = [UInt64](repeating: 0, count: maxFrames)
        var truncated: Int32 = 0
        var stitched: Int32 = 0
        var broken: Int32 = 0
        let depth = cap_unwind_async_for_test(
          &image, 1, Self.leafPC, rsp, rbp, r14(heapBase), rsp, base + 8 * 64, &memory, 1, &executorRanges,
          UInt32(executorRanges.count), &frames, UInt32(maxFrames), &truncated, &stitched, &broken)
        return Result(
          frames: Array(frames.prefix(Int(depth))), truncated: truncated != 0, stitched: stitched != 0,
          broken: broken != 0)
      }
    }
  }

  /// ctx0 (at +0) → ctx1 (at +32) → ctx2 (at +64, the task's first context).
  func chain(_ words: UnsafeMutablePointer<UInt64>, _ base: UInt64) {
    words[0] = base + 32
    words[1] = Self.resume1
    words[4] = base + 64
    words[5] = Self.resume2
    words[8] = 0
    words[9] = Self.completion
  }

  @Test func framelessAsyncFrameTakesItsContextFromR14() {
    let result = walk(framePointer: false, r14: { $0 }, contexts: chain)
    #expect(result.frames == [
      Self.leafPC, Self.asyncReturn, Self.resume1 + 1, Self.resume2 + 1, Self.async, Self.executorReturn,
    ])
    #expect(result.stitched)
    #expect(!result.broken)
  }

  @Test func asyncFrameWithFramePointerTakesTheSlotBelowIt() {
    let result = walk(framePointer: true, r14: { _ in 0x1234 }, slot: { $0 }, contexts: chain)
    #expect(result.frames == [
      Self.leafPC, Self.asyncReturn, Self.resume1 + 1, Self.resume2 + 1, Self.async, Self.executorReturn,
    ])
  }

  @Test func aCalleesContextAtTheStartOfAResumeFunctionIsSkipped() {
    // r14 still holds the callee's context, whose resume point is A itself.
    let result = walk(framePointer: false, r14: { $0 + 96 }) { words, base in
      chain(words, base)
      words[12] = base  // parent: ctx0
      words[13] = 0x2000  // resumes A, 5 bytes before the frame's pc
    }
    #expect(result.frames == [
      Self.leafPC, Self.asyncReturn, Self.resume1 + 1, Self.resume2 + 1, Self.async, Self.executorReturn,
    ])
  }

  @Test func aCycleEndsTheChainWithAMarker() {
    let result = walk(framePointer: false, r14: { $0 }) { words, base in
      words[0] = base + 32
      words[1] = Self.resume1
      words[4] = base  // back to ctx0
      words[5] = Self.resume2
    }
    #expect(result.broken)
    #expect(result.frames.last == Self.executorReturn)
    #expect(result.frames.contains(Self.broken))
    #expect(result.frames.count < 16)
  }

  @Test func anUnreadableParentEndsTheChainWithAMarker() {
    let result = walk(framePointer: false, r14: { $0 }) { words, base in
      words[0] = base + 32
      words[1] = Self.resume1
      words[4] = 0x7000_0000_0000  // aligned, but mapped nowhere the snapshot knows
      words[5] = Self.resume2
    }
    #expect(result.frames == [
      Self.leafPC, Self.asyncReturn, Self.resume1 + 1, Self.resume2 + 1, Self.broken, Self.executorReturn,
    ])
    #expect(result.broken)
  }

  @Test func aFrameWithoutAContextIsLeftAlone() {
    // A plain job (no task): r14 points nowhere readable, no slot.
    let garbage = walk(framePointer: false, r14: { _ in 0xDEAD_0000 }, contexts: chain)
    #expect(garbage.frames == [Self.leafPC, Self.asyncReturn, Self.executorReturn])
    #expect(!garbage.stitched)
    // Readable memory whose second word is not code is no context either.
    let data = walk(framePointer: false, r14: { $0 }) { words, base in
      words[0] = base + 32
      words[1] = 0x9999_0000
    }
    #expect(data.frames == [Self.leafPC, Self.asyncReturn, Self.executorReturn])
  }

  @Test func noExecutorNoStitching() {
    let result = walk(framePointer: false, r14: { $0 }, executors: [], contexts: chain)
    #expect(result.frames == [Self.leafPC, Self.asyncReturn, Self.executorReturn])
  }

  @Test func theDepthLimitIsShared() {
    let result = walk(framePointer: false, r14: { $0 }, maxFrames: 3, contexts: chain)
    #expect(result.frames == [Self.leafPC, Self.asyncReturn, Self.resume1 + 1])
    #expect(result.truncated)
  }
}
