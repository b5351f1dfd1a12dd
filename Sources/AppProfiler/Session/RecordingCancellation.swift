import Synchronization

/// Ends a ``Profiler/recordSynchronously(mode:duration:interval:options:cancellation:)``
/// early, from any thread (the profile server cancels when the client goes away).
public final class RecordingCancellation: Sendable {
  private let flag = Atomic<Bool>(false)

  public init() {}

  public func cancel() { flag.store(true, ordering: .releasing) }

  public var isCancelled: Bool { flag.load(ordering: .acquiring) }
}

extension Duration {
  /// Whole nanoseconds (saturating at 0 for negative durations).
  var nanoseconds: UInt64 {
    let (seconds, attoseconds) = components
    guard seconds >= 0 else { return 0 }
    return UInt64(seconds) * 1_000_000_000 + UInt64(attoseconds / 1_000_000_000)
  }
}
