import CAppProfiler
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// How a session samples. The defaults fit a server process; each says why.
public struct SessionOptions: Sendable, Hashable {
  /// Which mechanism produces cpu samples.
  public enum CPUEngine: Sendable, Hashable {
    /// POSIX CPU timers when the interval is at least one scheduler tick
    /// (1/CONFIG_HZ: 4 ms at 250 Hz, so 100 Hz qualifies): unlike perf
    /// events they add nothing to the profiled threads' context switches.
    /// perf events for shorter intervals, where timers would fire once per
    /// tick only; POSIX CPU timers wherever `perf_event_open` is refused.
    case automatic
    /// Per-thread perf task-clock events only; fail where they are refused.
    case perfEvents
    /// Per-thread POSIX CPU timers. They fire on scheduler ticks only
    /// (CONFIG_HZ, often 250 Hz), so at 1 kHz a sample stands for about four
    /// intervals (its weight counts the overruns): a quarter of the distinct
    /// stacks perf events give.
    case posixTimers
    /// A ticker thread at randomized hrtimer deadlines reads each thread's
    /// CPU clock and signals the threads whose CPU time passed their next
    /// randomized target, found running (weight: the intervals passed).
    /// No scheduler tick, so no phase locking with periodic work, and
    /// nothing per context switch (at 1 kHz a fraction of perf events'
    /// cost); a clock read per thread per tick. A thread that runs in short
    /// bursts may be found off its CPU and part of its samples land on its
    /// wait (docs/sampling.md). Asked for by name only.
    case cpuTicker
  }

  /// Allowed sampling intervals: 100 µs (beyond that the handler's own cost,
  /// ~1–3 µs per sample, becomes a visible share of a core) to 1 s. Stated
  /// once, in C (`CAP_MIN_INTERVAL_NS`, `CAP_MAX_INTERVAL_NS`), which checks
  /// them too.
  public static let allowedIntervals: ClosedRange<Duration> =
    .nanoseconds(Int64(CAP_MIN_INTERVAL_NS)) ... .nanoseconds(Int64(CAP_MAX_INTERVAL_NS))

  /// Allowed ``bufferSlots`` and ``maxThreads`` (C: `CAP_*_BUFFER_SLOTS`, `CAP_MAX_THREADS`).
  public static let allowedBufferSlots: ClosedRange<Int> = Int(CAP_MIN_BUFFER_SLOTS)...Int(CAP_MAX_BUFFER_SLOTS)
  public static let allowedMaxThreads: ClosedRange<Int> = 1...Int(CAP_MAX_THREADS)

  /// The `interval` a request may give for `mode`, as it is written there:
  /// microseconds for cpu and wall, mean bytes between samples for alloc;
  /// with its unit for messages. The one place these ranges are stated.
  public static func intervalParameterRange(for mode: Profile.Mode) -> (range: ClosedRange<Int>, unit: String) {
    mode.isAllocation
      ? (allowedAllocationSamplingRates, "bytes")
      : mode.isLock
        ? (1...1_000_000_000, "ns")
        : (Int(CAP_MIN_INTERVAL_NS / 1000)...Int(CAP_MAX_INTERVAL_NS / 1000), "µs")
  }

  /// Signal used to interrupt threads. Default `SIGPROF`, which nothing else
  /// in a typical server uses; change it if your process uses SIGPROF itself.
  public var signal: Int32 = SIGPROF
  public var cpuEngine: CPUEngine = .automatic
  /// Raw sample slots at most (about 2 KiB of address space each). The
  /// drain empties them every 10 ms, so 4096 slots hold up to ~400,000
  /// samples/s (200 busy threads at 1 kHz) before samples drop. A sampler
  /// starts with room for 40 ms of the samples it expects (256 slots at
  /// least) and the drain doubles that, up to this count, when bursts need
  /// it: only the slots in use are ever touched.
  public var bufferSlots: Int = 4096
  /// Threads tracked at once. 4096 is far above what a server runs; threads
  /// beyond it are counted in `threadsNotSampled`, not sampled.
  public var maxThreads: Int = 4096
  /// Include time spent in the kernel (system calls) in cpu samples when the
  /// kernel allows it (root, or perf_event_paranoid ≤ 1). Default true, like
  /// `perf record`; the profile's engine name says which one ran.
  public var includeKernelTime: Bool = true

  /// How stacks are walked in the signal handler.
  public enum Unwinder: Sendable, Hashable {
    /// DWARF call frame information (`.eh_frame`), compiled into tables
    /// before the session; frame pointers where an address has no CFI.
    /// Complete stacks through code built without frame pointers (glibc,
    /// libdispatch) and correct callers of leaf functions. x86_64 only;
    /// elsewhere it falls back to frame pointers.
    case callFrameInformation
    /// Frame pointers only: no tables to build, but stacks through glibc and
    /// optimized leaf functions lose frames. For comparisons.
    case framePointers
  }

  /// Longest time a profile waits for source locations (file:line and
  /// inlined frames) of addresses seen for the first time; nil = no limit.
  /// Beyond it those addresses keep their ELF symbol names, the profile's
  /// `metadata["source_locations_pending"]` counts them, and their source
  /// frames are computed in the background for the next profile. Why: the
  /// toolchain's DWARF reader re-runs an image's line program for every
  /// address, so the first profile of a large module with thousands of new
  /// addresses could otherwise stall for many seconds (17 s measured for
  /// 10,000 functions) — past the scrape timeouts of continuous profilers.
  public var symbolicationBudget: Duration? = .seconds(3)

  /// Default `.callFrameInformation`: a profile of a server is mostly
  /// threads blocked in libc, which frame pointers cannot walk out of.
  public var unwinder: Unwinder = .callFrameInformation

  /// Allocation profiles: mean bytes allocated between two samples (each
  /// thread draws exponentially distributed countdowns, so every byte has
  /// the same chance to be sampled). Default 512 KiB, Go's MemProfileRate:
  /// a few hundred samples per second in an allocation-heavy server.
  /// Smaller is more precise and costs more; 1 samples every allocation.
  public var allocationSamplingRate: Int = 524_288

  /// Block and mutex profiles: a lock wait of d is recorded with
  /// probability min(1, d / rate) and counted as 1/p contentions of d/p
  /// each (Go's `SetBlockProfileRate`, unbiased). Default 100 µs: waits
  /// from 100 µs on are all recorded, shorter ones in proportion, so the
  /// recording (a stack walk) happens on average at most once per 100 µs of the
  /// time threads wait. 1 ns records every contended acquisition.
  public var lockSamplingRate: Duration = .microseconds(100)

  /// Allowed lock sampling rates.
  public static let allowedLockSamplingRates: ClosedRange<Duration> = .nanoseconds(1) ... .seconds(1)

  /// Swift concurrency: follow the running task's chain of async contexts,
  /// so every stack shows the async functions that awaited their way to it
  /// (under an `[async]` frame, above the executor). Default true; false
  /// records thread stacks only (for comparison). Needs the CFI unwinder
  /// (x86_64); see docs/async-stacks.md.
  public var asyncStacks = true

  /// Keep the profiler's own threads (drain, symbolication, profile
  /// requests, the profile server's event loop) in profiles. Default false:
  /// a profile is of the app; the time they used is in the metadata
  /// (`profiler_cpu_seconds`). Thread dumps always list every thread.
  public var includeProfilerThreads = false

  /// Wall sessions that are not task-scoped: also count every Swift task on
  /// no thread — suspended at an await, or enqueued — under `[suspended: …]`
  /// / `[enqueued]` markers, on a pseudo-thread (docs/tasks.md). Up to 64
  /// tasks are read per 10 ms pass, weighted for the rest. Task-scoped wall
  /// sessions always count their own tasks. Default false.
  public var includesSuspendedTasks = false

  /// For scrapers: while a sampler of this mode runs with another interval
  /// or options, read it instead of failing with ``ProfilerError/busy``
  /// (the profile then has that sampler's interval, in its period). Default
  /// false. The server's `/debug/pprof/profile`, `/wall` and `allocs?seconds=`
  /// set it.
  public var joinsRunningSampler = false

  /// File:line and inlined frames (DWARF, through the toolchain's
  /// symbolicator). Default true. False: function names from the ELF symbol
  /// tables only, nothing computed in the background — for profiles built
  /// continuously (the flight recorder's every second, the Pyroscope
  /// exporter's every interval), where the symbolicator's CPU would be paid
  /// all the time (BENCHMARKS.md, continuous).
  public var sourceLocations = true

  /// Thread dumps: read each thread's kernel state (`/proc/self/task/<tid>/
  /// syscall`, `wchan`) when the session ends.
  var recordsKernelState = false

  /// Allowed allocation sampling rates, in bytes.
  public static let allowedAllocationSamplingRates: ClosedRange<Int> = 1...(1 << 30)

  public init() {}
}

/// What makes two sessions able to read one sampler: the mode, the
/// interval (cpu, wall) or rate (alloc), and the options the sampler uses
/// — not those of building a profile (symbolication budget, profiler
/// threads, kernel states), which each session applies to its own.
struct RunKey: Hashable, Sendable {
  var mode: Profile.Mode
  var interval: Duration
  var options: SessionOptions

  init(mode: Profile.Mode, interval: Duration, options: SessionOptions) {
    var sampler = options
    sampler.symbolicationBudget = nil
    sampler.includeProfilerThreads = false
    sampler.includesSuspendedTasks = false
    sampler.recordsKernelState = false
    sampler.joinsRunningSampler = false
    sampler.sourceLocations = true
    if mode.isEvent {
      self.interval = .zero
    } else {
      self.interval = interval
    }
    if !mode.isAllocation { sampler.allocationSamplingRate = 0 }
    if !mode.isLock { sampler.lockSamplingRate = .zero }
    // heap and alloc sessions read the same wrappers.
    self.mode = mode.isAllocation ? .alloc : mode
    self.options = sampler
  }
}
