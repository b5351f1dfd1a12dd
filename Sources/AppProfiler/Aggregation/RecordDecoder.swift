import CAppProfiler

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads one drained record (``SampleRecords``) as the profile stores it:
/// what kind of record it is, its frames, and for event records the events
/// and amount it stands for. Pure: no registry, no `/proc`.
///
/// Frames: a signal sample's leaf is the interrupted pc and is kept as it
/// is; every other frame is a return address and is stored minus one, so it
/// falls inside the call instruction (the line of the call, not of the next
/// statement). Async resume points (a task's callers) arrive as entry + 1
/// and so land on the entry. Synthetic frames (below 4096) are kept as they
/// are.
enum RecordDecoder {
  enum Kind: Equatable {
    /// A signal sample with its stack.
    case sample
    /// A signal sample whose stack is the thread's previous one (`CAP_SAMPLE_REPEAT`).
    case repeatOfPrevious
    /// A tick whose signal the thread blocked: no stack, only its kernel state.
    case signalBlocked
    /// An allocation (`CAP_SAMPLE_ALLOCATION`): weight is its size in bytes.
    case allocation
    /// A lock wait or hold (`CAP_SAMPLE_LOCK_WAIT`, `CAP_SAMPLE_LOCK_HOLD`): weight is the delay in ns.
    case lock(UInt16)
  }

  static let lockFlags = UInt16(CAP_SAMPLE_LOCK_WAIT) | UInt16(CAP_SAMPLE_LOCK_HOLD)

  static func kind(of record: SampleRecords.Record) -> Kind {
    if record.has(CAP_SAMPLE_ALLOCATION) { return .allocation }
    let flags = record.header.flags
    if flags & lockFlags != 0 { return .lock(flags & lockFlags) }
    if record.has(CAP_SAMPLE_UNDELIVERED) && record.has(CAP_SAMPLE_SIGNAL_BLOCKED) { return .signalBlocked }
    if record.has(CAP_SAMPLE_REPEAT) { return .repeatOfPrevious }
    return .sample
  }

  /// Replaces `frames` with the record's stack, leaf first: for allocations
  /// a Swift object's type as a leaf frame of its own, then the frames, then
  /// `[truncated]` or `[stack unavailable]` where the walk stopped early.
  /// Returns whether it was truncated.
  @discardableResult
  static func frames(of record: SampleRecords.Record, into frames: inout [UInt64]) -> Bool {
    frames.removeAll(keepingCapacity: true)
    let header = record.header
    let isSignalSample = kind(of: record) == .sample
    if !isSignalSample && header.object_type != 0 { frames.append(SyntheticFrame.typeFrame(header.object_type)) }
    for index in 0..<record.depth {
      let address = record.frame(index)
      let keep = (isSignalSample && index == 0) || address < SyntheticFrame.limit
      frames.append(keep ? address : address &- 1)
    }
    if record.has(CAP_SAMPLE_TRUNCATED) {
      frames.append(SyntheticFrame.truncated.rawValue)
      return true
    }
    if record.has(CAP_SAMPLE_NO_STACK_BOUNDS) { frames.append(SyntheticFrame.stackUnavailable.rawValue) }
    return false
  }

  /// An allocation of `size` bytes, sampled with probability
  /// p = 1 − e^(−size / rate): 1/p objects and size/p bytes (Go's scaling,
  /// per sample).
  static func allocationEstimate(size: Double, rate: Double) -> (events: Double, amount: Double) {
    let probability = rate > 0 ? -expm1(-size / rate) : 1
    let objects = probability > 0 ? 1 / probability : 1
    return (objects, size * objects)
  }

  /// A lock delay `delay` ns recorded with probability p = min(1, delay / rate):
  /// 1/p contentions and delay/p ns (Go's block profile scaling).
  static func lockEstimate(delay: Double, rate: Double) -> (events: Double, amount: Double) {
    let probability = rate > 0 ? min(1, delay / rate) : 1
    guard probability > 0 else { return (1, delay) }
    return (1 / probability, delay / probability)
  }
}
