import AppProfilerFormats
import CAppProfiler
import Synchronization

/// Which process-wide sampler a session reads. One sampler of each runs at
/// a time, independently of the others.
///
/// A session's mode (``Profile/Mode``) says what its samples measure; its
/// slot says which sampler takes them. Most modes have a slot of their own;
/// thread dumps are wall samples taken by the `snapshot` slot, and the
/// flight recorder's cpu and wall samples come from slots of their own, so
/// a dump, a profile and the flight recorder run at once.
enum SamplerSlotID: Int, CaseIterable, Sendable {
  case cpu, wall, alloc, block, mutex
  /// Thread dumps (``Profiler/threadSnapshot(options:)``): wall, one tick.
  case snapshot
  /// The flight recorder's cpu and wall sampling (``FlightRecorder``).
  case flightCPU, flightWall

  /// The slot a session of `mode` uses unless it names another.
  init(for mode: Profile.Mode) {
    switch mode {
    case .wall: self = .wall
    case .block: self = .block
    case .mutex: self = .mutex
    default: self = mode.isAllocation ? .alloc : .cpu
    }
  }

  /// The C session of a signal sampler (`CAP_SESSION_*`); nil for the
  /// wrappers' samplers (allocations, locks), which have C state of their own.
  var cSession: Int32? {
    switch self {
    case .cpu: Int32(CAP_SESSION_CPU)
    case .wall: Int32(CAP_SESSION_WALL)
    case .snapshot: Int32(CAP_SESSION_SNAPSHOT)
    case .flightCPU: Int32(CAP_SESSION_FLIGHT_CPU)
    case .flightWall: Int32(CAP_SESSION_FLIGHT_WALL)
    case .alloc, .block, .mutex: nil
    }
  }
}

/// One sampler slot: the lifecycle state machine of its sampler, the
/// running sampler, and where each of its consumers began reading. Held
/// while a sampler arms or stops, so a session asking meanwhile waits and
/// then joins or starts anew.
final class SamplerSlot: Sendable {
  let id: SamplerSlotID
  private let state = Mutex(State())

  private struct State {
    var machine = SessionStateMachine<RunKey>()
    var run: SamplingRun?
    var marks: [UInt64: SampleCollector.Mark] = [:]
  }

  init(_ id: SamplerSlotID) { self.id = id }

  var isIdle: Bool { state.withLock { $0.machine.isIdle } }

  struct Attached {
    let run: SamplingRun
    let consumer: UInt64
    /// The sampling it reads (a joining scraper's is the running one's).
    let key: RunKey
  }

  /// Joins the running sampler when it samples as `key` asks (any running
  /// sampler when `joinsRunning`), else starts one made by `makeBackend`.
  /// A new sampler's first consumer reads everything it takes; an event
  /// window over continuous sampling starts from the continuous sampler's
  /// counters (its mark holds them).
  /// - Throws: ``ProfilerError/busy`` while it samples otherwise (or holds
  ///   16 consumers); what `makeBackend` throws.
  func attach(
    _ key: RunKey, joinsRunning: Bool, isEvent: Bool, makeBackend: () throws -> any SessionBackend
  ) throws -> Attached {
    try state.withLock { slot throws -> Attached in
      var key = key
      if joinsRunning, let running = slot.machine.runningKey { key = running }
      switch slot.machine.attach(key) {
      case .failure:
        throw ProfilerError.busy
      case .success(.joined(_, let consumer)):
        guard let run = slot.run else { throw ProfilerError.busy }
        run.consumerJoined()
        slot.marks[consumer] = run.backend.mark()
        return Attached(run: run, consumer: consumer, key: key)
      case .success(.newRun(let id, let consumer)):
        do {
          let backend = try makeBackend()
          let run = SamplingRun(id: id, slot: self, backend: backend)
          _ = slot.machine.armed(id)
          slot.run = run
          slot.marks[consumer] = isEvent ? backend.mark() : SampleCollector.Mark()
          return Attached(run: run, consumer: consumer, key: key)
        } catch {
          slot.machine.failed(id)
          throw error
        }
      }
    }
  }

  enum Detached {
    /// The samples of the run (all of them: subtract the mark) and its report.
    case kept(SampleCollector, SessionReport, SampleCollector.Mark)
    case dropped
    case notAttached
  }

  /// A consumer leaves its run: the last one stops the sampler.
  func detach(_ consumer: UInt64, of run: SamplingRun, keepingSamples: Bool) -> Detached {
    state.withLock { slot in
      guard slot.run === run else { return .notAttached }
      switch slot.machine.detach(consumer) {
      case .notAttached:
        return .notAttached
      case .others:
        let mark = slot.marks.removeValue(forKey: consumer) ?? SampleCollector.Mark()
        guard keepingSamples else { return .dropped }
        let (collector, report) = run.backend.snapshot(keeping: Array(slot.marks.values))
        return .kept(collector, report, mark)
      case .last(let id):
        let mark = slot.marks.removeValue(forKey: consumer) ?? SampleCollector.Mark()
        slot.run = nil
        slot.marks = [:]
        defer { slot.machine.finished(id) }
        guard keepingSamples else {
          run.backend.cancel()
          return .dropped
        }
        let (collector, report) = run.backend.finish()
        return .kept(collector, report, mark)
      }
    }
  }

  /// A consumer takes the samples of its window so far and goes on reading
  /// from exactly where they end (the mark is taken from the same snapshot,
  /// so consecutive windows neither overlap nor leave a gap).
  func rotate(_ consumer: UInt64, of run: SamplingRun) -> Detached {
    state.withLock { slot in
      guard slot.run === run, let mark = slot.marks[consumer] else { return .notAttached }
      let (collector, report) = run.backend.snapshot(keeping: Array(slot.marks.values))
      slot.marks[consumer] = collector.mark(
        counters: SamplerCounters(
          recorded: report.samplesRecorded, dropped: report.samplesDropped, complete: report.completeStacks))
      return .kept(collector, report, mark)
    }
  }
}

/// Every slot of the process, one per ``SamplerSlotID``.
struct SamplerSlots: Sendable {
  private let slots: [SamplerSlot] = SamplerSlotID.allCases.map(SamplerSlot.init)

  subscript(id: SamplerSlotID) -> SamplerSlot { slots[id.rawValue] }

  /// True while a sampler (of any slot) is arming, running or stopping.
  var isBusy: Bool { slots.contains { !$0.isIdle } }
}

/// One running sampler (signals or allocation wrappers) and how many
/// consumers it had. Its consumers and their marks live in its slot, under
/// the slot's lock.
final class SamplingRun: Sendable {
  let id: UInt64
  let slot: SamplerSlot
  let backend: any SessionBackend
  private let seen = Atomic<Int>(1)

  init(id: UInt64, slot: SamplerSlot, backend: any SessionBackend) {
    self.id = id
    self.slot = slot
    self.backend = backend
  }

  /// Consumers that read this run so far (for the profile's metadata).
  var consumersSeen: Int { seen.load(ordering: .relaxed) }
  func consumerJoined() { seen.add(1, ordering: .relaxed) }
}
