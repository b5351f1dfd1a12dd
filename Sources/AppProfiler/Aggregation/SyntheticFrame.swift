/// Frames that stand for something other than code: losses, markers and
/// states. Their addresses are below 4096, where no code is ever mapped, so
/// no real frame can collide with them (STYLE.md: a loss is a visible frame).
///
/// - 1…14: ``SyntheticFrame`` cases.
/// - 1024…4095: kernel states of threads that block the sampling signal
///   (``KernelStateFrames``).
/// - A Swift object's type metadata, in allocation profiles, is a frame
///   whose address has the top bit set (``SyntheticFrame/typeFrame(_:)``).
enum SyntheticFrame: UInt64, CaseIterable {
  case truncated = 1
  case stackUnavailable = 2
  case droppedSamples = 3
  case unknownStack = 4
  case signalBlocked = 5
  /// Between a task's async callers and the executor running it (C: CAP_FRAME_ASYNC).
  case async = 6
  /// Where a task's context chain could not be followed (CAP_FRAME_ASYNC_BROKEN).
  case asyncBroken = 7
  /// Task wall profiles: a task of the scope waiting, not on a thread (TaskWall).
  case suspendedContinuation = 8
  case suspendedTask = 9
  case suspendedGroup = 10
  case suspendedSleep = 11
  case suspendedActor = 12
  case suspendedOther = 13
  case enqueued = 14

  var name: String {
    switch self {
    case .suspendedContinuation: return "[suspended: continuation]"
    case .suspendedTask: return "[suspended: task]"
    case .suspendedGroup: return "[suspended: group]"
    case .suspendedSleep: return "[suspended: sleep]"
    case .suspendedActor: return "[suspended: actor]"
    case .suspendedOther: return "[suspended]"
    case .enqueued: return "[enqueued]"
    case .truncated: return "[truncated]"
    case .stackUnavailable: return "[stack unavailable]"
    case .droppedSamples: return "[dropped samples]"
    case .unknownStack: return "[unknown stack: signal not delivered]"
    case .signalBlocked: return "[signal blocked]"
    case .async: return "[async]"
    case .asyncBroken: return "[async chain unreadable]"
    }
  }

  /// Every address below this one is synthetic.
  static let limit: UInt64 = 4096

  /// Type frames: the metadata address with the top bit set (no code or
  /// data address of a user-space process has it).
  static let typeFrameTag: UInt64 = 1 << 63

  static func typeFrame(_ metadata: UInt64) -> UInt64 { metadata | typeFrameTag }

  static func isTypeFrame(_ address: UInt64) -> Bool { address & typeFrameTag != 0 }
}

/// The kernel states seen for threads that block the sampling signal
/// (`[kernel: futex]`), each given a synthetic address from 1024 up, the
/// first time it is seen, while addresses last.
struct KernelStateFrames: Sendable {
  static let base: UInt64 = 1024

  private(set) var names: [String] = []
  private var addresses: [String: UInt64] = [:]

  /// The address of `state`; nil once the 3,072 addresses are used up.
  mutating func address(of state: String) -> UInt64? {
    if let known = addresses[state] { return known }
    guard Self.base + UInt64(names.count) < SyntheticFrame.limit else { return nil }
    let address = Self.base + UInt64(names.count)
    names.append(state)
    addresses[state] = address
    return address
  }

  /// The name of a synthetic address: a ``SyntheticFrame`` or a state.
  func name(of address: UInt64) -> String {
    if let frame = SyntheticFrame(rawValue: address) { return frame.name }
    let index = Int(address) - Int(Self.base)
    return index >= 0 && index < names.count ? names[index] : "[synthetic]"
  }
}
