/// The lifecycle of the process-wide profiling slot:
///
///     idle ──start──▶ arming ──armed──▶ running ──stop──▶ draining ──finished──▶ idle
///                       └──failed──▶ idle        (cancel goes through draining too)
///
/// Pure state, no I/O, so it is tested without signals or threads. Every
/// transition out of arming and draining leads back to idle, which is what
/// keeps a failed session from leaving the process "busy" for ever.
struct SessionStateMachine: Sendable, Equatable {
  enum State: Sendable, Equatable {
    case idle
    case arming(id: UInt64)
    case running(id: UInt64)
    case draining(id: UInt64)
  }

  enum Failure: Error, Equatable {
    case busy
    case notCurrent
  }

  private(set) var state: State = .idle
  private var nextID: UInt64 = 1

  var isIdle: Bool { state == .idle }

  /// Claims the slot. Fails with `busy` unless idle.
  mutating func start() -> Result<UInt64, Failure> {
    guard case .idle = state else { return .failure(.busy) }
    let id = nextID
    nextID += 1
    state = .arming(id: id)
    return .success(id)
  }

  /// Arming worked: samples are being taken.
  mutating func armed(_ id: UInt64) -> Result<Void, Failure> {
    guard case .arming(id) = state else { return .failure(.notCurrent) }
    state = .running(id: id)
    return .success(())
  }

  /// Arming failed: the slot is free again.
  mutating func failed(_ id: UInt64) {
    if case .arming(id) = state { state = .idle }
  }

  /// Stop was asked for. Returns false when the session already stopped
  /// (a second stop is a no-op for the caller).
  mutating func stop(_ id: UInt64) -> Bool {
    guard case .running(id) = state else { return false }
    state = .draining(id: id)
    return true
  }

  /// Draining finished (or failed): the slot is free.
  mutating func finished(_ id: UInt64) {
    switch state {
    case .draining(id), .running(id), .arming(id): state = .idle
    default: break
    }
  }
}
