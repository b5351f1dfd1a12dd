import AppProfilerFormats
import CAppProfiler

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// What a sampler reports about a finished session: the profile's
/// statistics and metadata, in Swift terms (the C counters stop here).
struct SessionReport: Sendable {
  /// The engine that ran, e.g. `perf_event(task-clock, user only)`.
  var engine: String
  /// The sampling period in the unit of the profile's period type:
  /// nanoseconds between samples, or mean bytes between allocation samples.
  var period: UInt64 = 0
  var samplesRecorded: Int64 = 0
  var samplesDropped: Int64 = 0
  var completeStacks: Int64 = 0
  var threadsNotSampled: Int64 = 0
  var missedTicks: Int64 = 0
  var threadsSignalBlocked: Int64 = 0
  /// Facts for `Profile.metadata` (ticks, unwinder, tables…).
  var metadata: [String: String] = [:]
}

/// A sampler's running counters, so a consumer that joined late counts
/// only its own share (``SessionReport/subtract(_:)``).
struct SamplerCounters: Sendable {
  var recorded: Int64 = 0
  var dropped: Int64 = 0
  var complete: Int64 = 0
}

extension SessionReport {
  /// The counters since `earlier`.
  mutating func subtract(_ earlier: SamplerCounters) {
    samplesRecorded = max(0, samplesRecorded - earlier.recorded)
    samplesDropped = max(0, samplesDropped - earlier.dropped)
    completeStacks = max(0, completeStacks - earlier.complete)
  }
}

/// The sampler behind one ``ProfilingSession``: signals (cpu, wall) or the
/// allocation wrappers. The session drives it without asking which it is.
///
/// Several consumers (``ProfilingSession``s) may read one backend: each
/// takes a ``mark()`` when it attaches and reads what came after it, from a
/// ``snapshot(keeping:)`` while others still read, or from ``finish()`` when
/// it is the last.
protocol SessionBackend: AnyObject, Sendable {
  /// Where a consumer attaching now starts reading (after a drain).
  func mark() -> SampleCollector.Mark
  /// Everything collected so far, sampling going on; samples before every
  /// mark in `keeping` (the consumers still reading) are dropped after.
  func snapshot(keeping marks: [SampleCollector.Mark]) -> (collector: SampleCollector, report: SessionReport)
  /// Stops sampling; returns the samples and the report.
  func finish() -> (collector: SampleCollector, report: SessionReport)
  /// Stops sampling and drops the samples. Safe to call more than once.
  func cancel()
}

/// The sampler of a new run in `slot`, and where its window starts when the
/// sampler says (the wrappers: once installed; building unwind tables first
/// may take 0.5 s, and in-use growth is per second of that window).
func makeSessionBackend(
  slot: SamplerSlotID, mode: Profile.Mode, interval: Duration, options: SessionOptions
) throws -> (backend: any SessionBackend, windowStart: (realtime: UInt64, monotonic: UInt64)?) {
  if mode.isAllocation {
    let installed = try AllocationBackend(options: options, startTimeNanoseconds: nil, startMonotonicNanoseconds: nil)
    return (installed, (installed.startTimeNanoseconds, installed.startMonotonicNanoseconds))
  }
  if let lockKind = LockRecorder.Kind(mode) {
    let installed = try LockBackend(kind: lockKind, options: options)
    return (installed, (installed.startTimeNanoseconds, installed.startMonotonicNanoseconds))
  }
  return (try SignalSamplingBackend(slot: slot, mode: mode, interval: interval, options: options), nil)
}

/// cpu and wall: the C session (handler, engines, ticker) and a drain thread.
final class SignalSamplingBackend: SessionBackend {
  private let period: UInt64
  /// Which of the C sessions (CAP_SESSION_*).
  private let cSession: Int32
  private let drain: SessionDrain
  /// Moves samples out of the C buffer every 10 ms: a thread of its own, so
  /// a session runs and ends while the app's cooperative pool is blocked.
  private let drainThread: DrainThread
  /// Unwind tables the handler reads; alive until the session is released.
  private let unwindTables: UnwindTableSet?

  /// `slot`: one of the signal samplers' slots (its C session); a thread
  /// dump's one tick comes at exactly the interval, every other at
  /// randomized intervals of that mean.
  init(slot: SamplerSlotID, mode: Profile.Mode, interval: Duration, options: SessionOptions) throws {
    guard let session = slot.cSession else { throw ProfilerError.unsupported("no signal sampler in the \(slot) slot") }
    period = interval.nanoseconds
    cSession = session
    drain = SessionDrain(slot: slot)
    var config = cap_config()
    config.session = session
    config.mode = mode == .wall ? Int32(CAP_MODE_WALL) : Int32(CAP_MODE_CPU)
    config.fixed_interval = slot == .snapshot ? 1 : 0
    switch options.cpuEngine {
    case .automatic: config.engine = Int32(CAP_ENGINE_AUTO)
    case .perfEvents: config.engine = Int32(CAP_ENGINE_PERF_EVENT)
    case .posixTimers: config.engine = Int32(CAP_ENGINE_POSIX_TIMER)
    case .cpuTicker: config.engine = Int32(CAP_ENGINE_CPU_TICKER)
    }
    config.signal_number = options.signal
    config.buffer_slots = UInt32(options.bufferSlots)
    config.interval_ns = interval.nanoseconds
    config.max_threads = UInt32(options.maxThreads)
    config.exclude_kernel = options.includeKernelTime ? 0 : 1
    let tables = UnwindTables.forSession(options)
    unwindTables = tables
    config.unwind_images = tables.map { UnsafePointer($0.images.baseAddress) } ?? nil
    config.unwind_image_count = UInt64(tables?.count ?? 0)
    config.async = AsyncRuntime.config(stitch: options.asyncStacks)
    try ProfilerError.check(operation: "starting the \(mode.rawValue) session") { cap_session_start(&config, $0, $1) }
    // Positional drains only: a full scan reads every slot of the ring (page
    // faults and cache misses while the app runs); stragglers are picked up
    // by the one full scan after stop.
    drainThread = DrainThread(drain: drain, warmer: SymbolWarmer(sourceLocations: options.sourceLocations))
  }

  func mark() -> SampleCollector.Mark {
    drain.drainAvailable(fullScan: false)
    var stats = cap_stats()
    cap_session_stats(cSession, &stats)
    return drain.mark(
      counters: SamplerCounters(
        recorded: Int64(stats.samples_written), dropped: Int64(stats.samples_dropped),
        complete: Int64(stats.complete_samples)))
  }

  func snapshot(keeping marks: [SampleCollector.Mark]) -> (collector: SampleCollector, report: SessionReport) {
    drain.drainAvailable(fullScan: false)
    let collector = drain.snapshot(keeping: marks)
    var stats = cap_stats()
    cap_session_stats(cSession, &stats)
    var report = Self.report(stats, tables: unwindTables)
    report.period = period
    return (collector, report)
  }

  func finish() -> (collector: SampleCollector, report: SessionReport) {
    drainThread.stop()
    cap_session_stop(cSession)
    drain.drainAvailable(fullScan: true)
    let collector = drain.takeCollector()
    var stats = cap_stats()
    cap_session_stats(cSession, &stats)
    drain.close { cap_session_release(cSession) }
    var report = Self.report(stats, tables: unwindTables)
    report.period = period
    return (collector, report)
  }

  func cancel() {
    drainThread.stop()
    // The drain thread may be in a drain right now: release under its lock,
    // so the buffer is never unmapped under a reader (found by TSan).
    drain.close { cap_session_release(cSession) }
  }

  static func report(_ stats: cap_stats, tables: UnwindTableSet?) -> SessionReport {
    var report = SessionReport(engine: engineName(stats))
    report.samplesRecorded = Int64(stats.samples_written)
    report.samplesDropped = Int64(stats.samples_dropped)
    report.completeStacks = Int64(stats.complete_samples)
    report.threadsNotSampled = Int64(stats.threads_failed)
    report.missedTicks = Int64(stats.missed_ticks)
    report.threadsSignalBlocked = Int64(stats.threads_signal_blocked)
    report.metadata["threads_seen"] = String(stats.threads_seen)
    report.metadata["memory_map_snapshots"] = String(stats.maps_refreshes)
    report.metadata["async_stitched_samples"] = String(stats.async_stitched)
    report.metadata["async_broken_chains"] = String(stats.async_broken)
    if Int(stats.engine) == Int(CAP_ENGINE_WALL_TICKER) {
      report.metadata["wall_ticks"] = String(stats.ticks)
      report.metadata["wall_signals_sent"] = String(stats.signals_sent)
      report.metadata["wall_tick_mean_ns"] = String(stats.ticks > 0 ? stats.tick_ns_total / stats.ticks : 0)
      report.metadata["wall_undelivered_ticks"] = String(stats.undelivered_ticks)
      report.metadata["wall_ticks_signal_pending"] = String(stats.pending_skips)
    }
    if let tables {
      report.metadata["unwinder"] = "cfi"
      report.metadata["unwind_images"] = String(tables.count)
      report.metadata["unwind_rows"] = String(tables.rowCount)
      report.metadata["unwind_table_bytes"] = String(tables.totalBytes)
      report.metadata["unwind_tables_built"] = String(tables.built)
      report.metadata["unwind_table_build_ms"] = String(Double(tables.buildNanoseconds) / 1e6)
    } else {
      report.metadata["unwinder"] = "frame-pointers"
    }
    return report
  }

  static func engineName(_ stats: cap_stats) -> String {
    String(cString: cap_engine_name(stats.engine, stats.exclude_kernel))
  }
}

/// alloc: a window of the allocation wrappers (AllocationRecorder).
final class AllocationBackend: SessionBackend {
  let startTimeNanoseconds: UInt64
  let startMonotonicNanoseconds: UInt64

  /// Start times nil: now, once the wrappers are installed.
  init(options: SessionOptions, startTimeNanoseconds: UInt64?, startMonotonicNanoseconds: UInt64?) throws {
    try AllocationRecorder.shared.beginWindow(rate: options.allocationSamplingRate, options: options)
    self.startTimeNanoseconds = startTimeNanoseconds ?? ProfilingSession.clock(CLOCK_REALTIME)
    self.startMonotonicNanoseconds = startMonotonicNanoseconds ?? ProfilingSession.clock(CLOCK_MONOTONIC)
  }

  func mark() -> SampleCollector.Mark {
    AllocationRecorder.shared.windowMark()
  }

  func snapshot(keeping marks: [SampleCollector.Mark]) -> (collector: SampleCollector, report: SessionReport) {
    let recording = AllocationRecorder.shared.windowSnapshot(
      startTimeNanoseconds: startTimeNanoseconds, startMonotonicNanoseconds: startMonotonicNanoseconds, keeping: marks)
    return (recording.collector, Self.report(recording))
  }

  func finish() -> (collector: SampleCollector, report: SessionReport) {
    let recording = AllocationRecorder.shared.endWindow(
      startTimeNanoseconds: startTimeNanoseconds, startMonotonicNanoseconds: startMonotonicNanoseconds)
    return (recording.collector, Self.report(recording))
  }

  func cancel() {
    AllocationRecorder.shared.cancelWindow()
  }

  static func report(_ recording: AllocationRecorder.Recording) -> SessionReport {
    var report = SessionReport(
      engine:
        "got_redirect(malloc, calloc, realloc, posix_memalign, aligned_alloc, memalign, swift_allocObject; free)")
    // While continuous sampling runs, a window samples at its rate: the
    // recording says which rate ran.
    report.period = UInt64(recording.rate)
    report.samplesRecorded = Int64(recording.stats.samples_written)
    report.samplesDropped = Int64(recording.stats.samples_dropped)
    report.completeStacks = Int64(recording.stats.complete_samples)
    report.metadata["alloc_sample_rate_bytes"] = String(recording.stats.mean_bytes)
    report.metadata["alloc_redirected_entries"] = String(recording.stats.patched_slots)
    report.metadata["alloc_redirected_images"] = String(recording.stats.patched_images)
    report.metadata["alloc_cumulative"] = recording.cumulative ? "true" : "false"
    report.metadata["async_stitched_samples"] = String(recording.stats.async_stitched)
    report.metadata["async_broken_chains"] = String(recording.stats.async_broken)
    report.metadata["unwinder"] = recording.callFrameInformation ? "cfi" : "frame-pointers"
    // The live-heap set: in-use figures leave out untracked samples.
    report.metadata["heap_tracked_live"] = String(recording.heap.live)
    report.metadata["heap_untracked_samples"] = String(recording.heap.untracked)
    report.metadata["heap_table_entries"] = String(recording.heap.capacity)
    report.metadata["heap_max_live"] = String(recording.heap.max_live)
    return report
  }
}
