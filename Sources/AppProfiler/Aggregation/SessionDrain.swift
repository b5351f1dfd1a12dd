import CAppProfiler
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// A signal session's drain: the thread that empties the C ring every
// 10 ms into a collector, and the symbol warmer it feeds.

/// The thread that drains a session every 10 ms until ``stop()``, which
/// returns once the thread has finished its last drain.
final class DrainThread: Sendable {
  private final class Flag: Sendable {
    let stopping = Atomic<Bool>(false)
  }
  private let flag = Flag()
  private let thread: ProfilerThread

  /// `warmer`: symbolizes what the drains brought, every 20 drains.
  init(drain: SessionDrain, warmer: SymbolWarmer? = nil) {
    let flag = self.flag
    self.thread = ProfilerThread(name: "app-prof-drain") {
      var drains = 0
      while !flag.stopping.load(ordering: .acquiring) {
        ProfilerThread.sleep(nanoseconds: 10_000_000)
        drain.drainAvailable(fullScan: false)
        drains += 1
        if drains % 20 == 0 { warmer?.warm(drain) }
      }
    }
  }

  /// Asks the thread to end and waits for it (at most one drain interval).
  /// Safe to call more than once.
  func stop() {
    flag.stopping.store(true, ordering: .releasing)
    thread.join()
  }
}

/// Moves samples out of the C buffer of one signal sampler's session into a
/// collector, one drain at a time.
final class SessionDrain: Sendable {
  private let slot: SamplerSlotID
  private let session: Int32

  init(slot: SamplerSlotID) {
    self.slot = slot
    self.session = slot.cSession ?? -1
  }

  private struct State: @unchecked Sendable {
    var collector = SampleCollector()
    var buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
    /// Set once the C session is released: drains become no-ops.
    var closed = false
    /// Stacks (the collector only appends them) already handed to the
    /// symbol warmer.
    var warmedStacks = 0
  }
  private let state = Mutex(State())

  deinit {
    state.withLock { $0.buffer.deallocate() }
  }

  func drainAvailable(fullScan: Bool) {
    ImageHistory.shared.refresh()
    state.withLock { state in
      guard !state.closed else { return }
      while true {
        let bytes = cap_session_drain(session, state.buffer.baseAddress, state.buffer.count, fullScan ? 1 : 0)
        if bytes == 0 { break }
        state.collector.ingest(UnsafeRawBufferPointer(rebasing: state.buffer[0..<bytes]))
        if bytes < state.buffer.count / 2 { break }
      }
      // Task-scoped wall sessions: their tasks' time on no thread.
      if slot == .wall || slot == .flightWall, TaskWall.shared.isActive {
        TaskWall.shared.sample(into: &state.collector, slot: slot)
      }
    }
  }

  /// Code addresses of the stacks collected since the last call (synthetic
  /// frames and top-bit values left out, as the profile builder leaves them
  /// out). One seen before comes again only in a new stack; the
  /// symbolizer's cache answers it.
  func newAddresses() -> [UInt64] {
    state.withLock { state in
      let stacks = state.collector.stacks
      guard state.warmedStacks < stacks.count else { return [] }
      var seen = Set<UInt64>()
      var fresh: [UInt64] = []
      for stack in stacks[state.warmedStacks...] {
        for address in stack where address >= 4096 && address >> 63 == 0 && seen.insert(address).inserted {
          fresh.append(address)
        }
      }
      state.warmedStacks = stacks.count
      return fresh
    }
  }

  /// Runs `release` (which frees the C session's buffer) with no drain in
  /// progress, and makes every later drain a no-op.
  func close(_ release: () -> Void) {
    state.withLock { state in
      guard !state.closed else { return }
      state.closed = true
      release()
    }
  }

  func mark(counters: SamplerCounters) -> SampleCollector.Mark {
    state.withLock { $0.collector.mark(counters: counters) }
  }

  /// A copy of what is collected; then drops what no mark in `keeping`
  /// reads, and the stacks and label sets only those samples named.
  func snapshot(keeping marks: [SampleCollector.Mark]) -> SampleCollector {
    state.withLock { state in
      let copy = state.collector
      state.collector.trim(keeping: marks)
      if let renumbered = state.collector.compact() {
        // Order is kept: the warmed stacks still held come first.
        let warmed = state.warmedStacks
        state.warmedStacks = renumbered.keys.reduce(0) { $0 + ($1 < warmed ? 1 : 0) }
      }
      return copy
    }
  }

  func takeCollector() -> SampleCollector {
    state.withLock { state in
      let collector = state.collector
      state.collector = SampleCollector()
      return collector
    }
  }
}

/// Symbolizes a running session's addresses in the background as they come
/// (on the symbolication thread, every 200 ms), so that when the session
/// ends its profile finds them in the symbolizer's caches: the first
/// profile of a process is otherwise built after the duration, reading
/// symbol tables and DWARF — on a machine the app saturates, at a third of
/// a core (BENCHMARKS.md, busy first profile). One warm-up at a time;
/// addresses that came meanwhile wait for the next.
final class SymbolWarmer: Sendable {
  private let sourceLocations: Bool
  private let busy = Atomic<Bool>(false)

  init(sourceLocations: Bool) { self.sourceLocations = sourceLocations }

  func warm(_ drain: SessionDrain) {
    guard !busy.exchange(true, ordering: .acquiring) else { return }
    let addresses = drain.newAddresses()
    guard !addresses.isEmpty else {
      busy.store(false, ordering: .releasing)
      return
    }
    let sourceLocations = self.sourceLocations
    SymbolicationThread.shared.runLater { [self] in
      let images = ImageHistory.shared.symbolicationMap()
      if sourceLocations {
        // File:line for the executable's code (SwiftPM links the app and
        // its packages into it): its DWARF is read in place. Libraries keep
        // the profile's budget and background pass — glibc's debug file,
        // zlib-compressed, would be inflated again at every warm-up.
        let executable = images.images.firstIndex { $0.isPermanent && !$0.isVDSO }
        let own = addresses.filter { address in executable != nil && images.lookup(address)?.image == executable }
        if !own.isEmpty { _ = Symbolizer.shared.resolve(own, in: images, budget: nil, sourceLocations: true) }
        // Their symbol tables, loaded now (the profile names their frames
        // by symbol while their lines come later).
        let libraries = addresses.filter { address in images.lookup(address).map { $0.image != executable } ?? false }
        if !libraries.isEmpty { _ = Symbolizer.shared.resolve(libraries, in: images, budget: nil, sourceLocations: false) }
      } else {
        _ = Symbolizer.shared.resolve(addresses, in: images, budget: nil, sourceLocations: false)
      }
      busy.store(false, ordering: .releasing)
    }
  }
}
