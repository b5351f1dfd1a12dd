/// The sampling slot of one kind (cpu, wall, alloc; ``Profiler`` holds one
/// per kind): at most one run (one sampler) at a time,
/// read by one or more consumers (``ProfilingSession``s) that asked for the
/// same kind of sampling (`Key`: mode, interval, sampler options):
///
///     idle ──attach──▶ arming ──armed──▶ running ──last detach──▶ draining ──finished──▶ idle
///                        └──failed──▶ idle    attach (same key) / detach (not last)
///
/// A consumer attaching while a run of another key is arming, running or
/// draining is `busy`, as is one beyond ``maximumConsumers``. Pure state, no
/// I/O, so it is tested without signals or threads. Every transition out of
/// arming and draining leads back to idle, which is what keeps a failed run
/// from leaving the process "busy" for ever.
struct SessionStateMachine<Key: Hashable & Sendable>: Sendable, Equatable {
  enum State: Sendable, Equatable {
    case idle
    case arming(run: UInt64, key: Key, consumer: UInt64)
    case running(run: UInt64, key: Key, consumers: Set<UInt64>)
    case draining(run: UInt64)
  }

  enum Failure: Error, Equatable {
    case busy
    case notCurrent
  }

  enum Attachment: Sendable, Equatable {
    /// No run was going: the caller arms one (then ``armed(_:)`` or ``failed(_:)``).
    case newRun(run: UInt64, consumer: UInt64)
    /// Reading the running run of the same key.
    case joined(run: UInt64, consumer: UInt64)
  }

  enum Detachment: Sendable, Equatable {
    /// Others still read the run: it goes on.
    case others(run: UInt64)
    /// The last consumer left: the caller stops the run, then ``finished(_:)``.
    case last(run: UInt64)
    /// Not a consumer of the current run (already detached, or stale).
    case notAttached
  }

  /// Consumers of one run at most: each costs a profile build; beyond this
  /// many at once, a request is refused like one of another kind.
  static var maximumConsumers: Int { 16 }

  private(set) var state: State = .idle
  private var nextID: UInt64 = 1

  var isIdle: Bool { state == .idle }

  /// The key of the running run, if one runs (arming or draining: nil).
  var runningKey: Key? {
    if case .running(_, let key, _) = state { return key }
    return nil
  }

  var consumerCount: Int {
    switch state {
    case .idle, .draining: return 0
    case .arming: return 1
    case .running(_, _, let consumers): return consumers.count
    }
  }

  private mutating func makeID() -> UInt64 {
    defer { nextID += 1 }
    return nextID
  }

  /// Joins the running run of `key`, or claims the idle slot for a new run.
  mutating func attach(_ key: Key) -> Result<Attachment, Failure> {
    switch state {
    case .idle:
      let run = makeID()
      let consumer = makeID()
      state = .arming(run: run, key: key, consumer: consumer)
      return .success(.newRun(run: run, consumer: consumer))
    case .running(let run, let running, var consumers) where running == key && consumers.count < Self.maximumConsumers:
      let consumer = makeID()
      consumers.insert(consumer)
      state = .running(run: run, key: running, consumers: consumers)
      return .success(.joined(run: run, consumer: consumer))
    default:
      return .failure(.busy)
    }
  }

  /// Arming worked: samples are being taken for its first consumer.
  mutating func armed(_ run: UInt64) -> Result<Void, Failure> {
    guard case .arming(run, let key, let consumer) = state else { return .failure(.notCurrent) }
    state = .running(run: run, key: key, consumers: [consumer])
    return .success(())
  }

  /// Arming failed: the slot is free again.
  mutating func failed(_ run: UInt64) {
    if case .arming(run, _, _) = state { state = .idle }
  }

  /// A consumer stops reading (stop or cancel). A second detach of the same
  /// consumer is `notAttached`.
  mutating func detach(_ consumer: UInt64) -> Detachment {
    guard case .running(let run, let key, var consumers) = state, consumers.contains(consumer) else {
      return .notAttached
    }
    consumers.remove(consumer)
    if consumers.isEmpty {
      state = .draining(run: run)
      return .last(run: run)
    }
    state = .running(run: run, key: key, consumers: consumers)
    return .others(run: run)
  }

  /// The run is stopped (or failed to stop): the slot is free.
  mutating func finished(_ run: UInt64) {
    switch state {
    case .draining(run), .running(run, _, _), .arming(run, _, _): state = .idle
    default: break
    }
  }
}
