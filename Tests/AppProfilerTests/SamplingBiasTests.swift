import AppProfiler
import CAppProfiler
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Periodic work, 3 ms of CPU in one function and 1 ms in another (timed by
/// the thread's own CPU clock): a 4 ms cycle. A fixed 10 ms period meets it
/// at two phases only, 2 ms apart, so each profile says ~50 % or ~100 %
/// depending on where it started; randomized intervals of the same mean see
/// every phase.
@inline(never) func periodicMajorPhase(until deadline: UInt64) -> Int {
  var spins = 0
  while threadCPUNanoseconds() < deadline { spins &+= 1 }
  return spins
}

@inline(never) func periodicMinorPhase(until deadline: UInt64) -> Int {
  var spins = 0
  while threadCPUNanoseconds() < deadline { spins &+= 1 }
  return spins
}


extension SamplingSuite {
  @Suite struct SamplingBias {
    /// Default interval (10 ms) for the engines without a scheduler tick —
    /// perf events and wall (the CPU ticker measured 69–80 % in serial runs,
    /// 43 % once with other tests competing for the cores: BENCHMARKS.md):
    /// within
    /// ±10 pp of the truth (75 %) at the ~200 samples of a quiet run.
    /// Binomial noise at ~200 samples is ~3 pp; a fixed period is off by 25
    /// to 75 pp on this workload. The POSIX timer engine is not held to it:
    /// its expiries are tick-bound (docs/sampling.md, "Randomized
    /// intervals"); measured here 58–86 % with randomized targets, 50 % with
    /// a fixed period.
    @Test(
      .disabled(if: underThreadSanitizer, "timing: the instrumented build stretches the workload's phases"),
      arguments: [
        ("cpu", SessionOptions.CPUEngine.perfEvents), ("wall", .automatic),
      ])
    func periodicWorkIsSampledAtEveryPhase(mode: String, engine: SessionOptions.CPUEngine) throws {
      let stop = StopFlag()
      let worker = TestThread(name: "periodic") {
        var start = threadCPUNanoseconds()
        while !stop.isSet {
          _ = periodicMajorPhase(until: start + 3_000_000)
          _ = periodicMinorPhase(until: start + 4_000_000)
          start += 4_000_000
        }
      }
      _ = worker.waitForTID()
      defer {
        stop.set()
        worker.join()
      }
      var options = SessionOptions()
      options.cpuEngine = engine
      let session = try Profiler.shared.start(mode: mode == "wall" ? .wall : .cpu, interval: Profiler.defaultInterval, options: options)
      // Sleep in steps: a wall tick interrupts this thread's sleep once.
      let deadline = monotonicNanoseconds() + 2_000_000_000
      while monotonicNanoseconds() < deadline { usleep(10_000) }
      let profile = try session.stopSynchronously()
      let major = profile.count(containing: "periodicMajorPhase")
      let minor = profile.count(containing: "periodicMinorPhase")
      let share = Double(major) / Double(max(1, major + minor))
      print("periodic 3:1 at 10 ms, \(mode) engine=\(profile.engine): major \(major), minor \(minor), share \(share)")
      // The bound: 10 pp, or 3.5 binomial standard deviations when a loaded
      // machine gave the worker fewer samples (a fixed period is 25 pp off
      // or more, still outside it at the 60 samples required).
      let samples = Double(major + minor)
      let bound = max(0.10, 3.5 * (0.75 * 0.25 / max(1, samples)).squareRoot())
      #expect(major + minor >= 60, "\(major + minor) samples")
      #expect(abs(share - 0.75) <= bound, "\(mode)/\(profile.engine): \(share) of samples in the 75 % phase (bound \(bound))")
    }
  }
}

@inline(never) func lightBurstWork(until deadline: UInt64) -> Int {
  var spins = 0
  while threadCPUNanoseconds() < deadline { spins &+= 1 }
  return spins
}

extension SamplingSuite.SamplingBias {
  /// A thread that runs briefly and sleeps most of the time (an event loop
  /// on light load): its cpu samples are where it runs, not where it sleeps.
  /// POSIX timers and perf events fire while it runs by construction. The
  /// CPU ticker signals it at a tick that finds it running (its CPU clock
  /// moves); when the ticker itself has put it off its core, it is not, and
  /// after 1 s it is signalled anyway: 16–81 of 27–87 samples in the burst
  /// measured. Its limit, recorded as a known issue (why it is not the
  /// default engine).
  @Test(
    .disabled(if: underThreadSanitizer, "timing"),
    arguments: [
      (SessionOptions.CPUEngine.posixTimers, 1000, 10), (.perfEvents, 200, 1), (.cpuTicker, 1000, 10), (.cpuTicker, 200, 1),
    ])
  func lightThreadsAreSampledWhereTheyRun(engine: SessionOptions.CPUEngine, burstMicroseconds: Int, intervalMilliseconds: Int)
    throws
  {
    let stop = StopFlag()
    let worker = TestThread(name: "light") {
      while !stop.isSet {
        _ = lightBurstWork(until: threadCPUNanoseconds() + UInt64(burstMicroseconds) * 1000)
        usleep(UInt32(10_000 - burstMicroseconds))
      }
    }
    let tid = worker.waitForTID()
    defer {
      stop.set()
      worker.join()
    }
    var options = SessionOptions()
    options.cpuEngine = engine
    let session = try Profiler.shared.start(
      mode: .cpu, interval: .milliseconds(Int64(intervalMilliseconds)), options: options)
    let deadline = monotonicNanoseconds() + 4_000_000_000
    while monotonicNanoseconds() < deadline { usleep(10_000) }
    let profile = try session.stopSynchronously()
    var inBurst: Int64 = 0
    var inSleepCall: Int64 = 0
    var all: Int64 = 0
    for thread in profile.threads where thread.id == tid {
      for sample in thread.samples {
        let count = profile.count(sample)
        all += count
        let names = profile.names(ofStack: sample.stack)
        if names.contains(where: { $0.contains("lightBurstWork") }) {
          inBurst += count
        } else if names.last == "clock_nanosleep" {
          inSleepCall += count
        }
      }
    }
    let share = Double(inBurst) / Double(max(1, all))
    print(
      "light thread (\(burstMicroseconds) µs of 10 ms) at \(intervalMilliseconds) ms, \(profile.engine): \(inBurst) of \(all) in its burst (\(share)), \(inSleepCall) in its usleep call"
    )
    #expect(all >= 20, "\(all) samples")
    if engine == .cpuTicker {
      // A ticker sample in usleep is a thread found off its core.
      withKnownIssue("the CPU ticker may find a briefly running thread off its core", isIntermittent: true) {
        #expect(share >= 0.9, "\(inBurst) of \(all)")
      }
    } else {
      // These engines count kernel time: the kernel half of the thread's own
      // usleep is CPU it used (5-16 % of the samples of the perf case in
      // runs here), so a sample there is where it ran — not elsewhere.
      #expect(Double(inBurst + inSleepCall) / Double(max(1, all)) >= 0.9, "\(inBurst) + \(inSleepCall) of \(all)")
      #expect(share >= 0.75, "\(inBurst) of \(all)")
    }
  }
}
