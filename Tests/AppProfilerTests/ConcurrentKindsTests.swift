@testable import AppProfiler
import Testing

#if canImport(Glibc)
import Glibc
#endif

@inline(never) func bothKindsBurn(_ stop: StopFlag) -> Int { burnSlice(5) }

extension SamplingSuite {
  /// One sampler per kind: a cpu and a wall session run at once, on the same
  /// signal, and each gets what it would get alone — even though a signal
  /// of one kind merges into a pending one of the other on a thread that
  /// both sample (the handler serves both; cap_signal_handler).
  @Suite struct ConcurrentKinds {
    func samples(of tid: Int32, in profile: Profile) -> Int64 {
      profile.thread(tid)?.samples.reduce(0) { $0 + profile.count($1) } ?? 0
    }

    @Test(arguments: [SessionOptions.CPUEngine.perfEvents, .posixTimers])
    func cpuAndWallAtOnce(engine: SessionOptions.CPUEngine) throws {
      let stop = StopFlag()
      let burner = TestThread(name: "kinds-burner") { while !stop.isSet { _ = bothKindsBurn(stop) } }
      let burnerTID = burner.waitForTID()
      let sleeper = TestThread(name: "kinds-sleeper") { while !stop.isSet { usleep(5_000) } }
      let sleeperTID = sleeper.waitForTID()
      var options = SessionOptions()
      options.cpuEngine = engine
      let cpu: ProfilingSession
      do {
        cpu = try Profiler.shared.start(mode: .cpu, interval: .milliseconds(2), options: options)
      } catch ProfilerError.system {
        stop.set()
        burner.join()
        sleeper.join()
        return  // perf events refused here: the timer case covers the rest
      }
      let wall = try Profiler.shared.start(mode: .wall, interval: .milliseconds(2))
      #expect(throws: ProfilerError.busy) { _ = try Profiler.shared.start(mode: .wall, interval: .milliseconds(5)) }
      // Not one usleep: the wall session's signal interrupts it (EINTR).
      let deadline = monotonicNanoseconds() + 1_500_000_000
      while monotonicNanoseconds() < deadline { usleep(10_000) }
      let wallProfile = try wall.stopSynchronously()
      let cpuProfile = try cpu.stopSynchronously()
      stop.set()
      burner.join()
      sleeper.join()
      #expect(!Profiler.shared.isBusy)

      let wallTicks = Double(wallProfile.durationNanoseconds) / 2e6
      let cpuTicks = Double(cpuProfile.durationNanoseconds) / 2e6
      let burnerWall = samples(of: burnerTID, in: wallProfile)
      let sleeperWall = samples(of: sleeperTID, in: wallProfile)
      let burnerCPU = cpuProfile.count(containing: "bothKindsBurn")
      let sleeperCPU = samples(of: sleeperTID, in: cpuProfile)
      print(
        "cpu+wall (\(engine)): wall ticks \(Int(wallTicks)): burner \(burnerWall), sleeper \(sleeperWall); "
          + "cpu ticks \(Int(cpuTicks)): burner \(burnerCPU), sleeper \(sleeperCPU); "
          + "\(cpuProfile.engine) / \(wallProfile.engine)")
      #expect(wallProfile.mode == .wall && cpuProfile.mode == .cpu)
      if underThreadSanitizer { return }
      // Wall: every thread is accounted for at every tick, running or not
      // (a merged signal still gives the burner its wall sample).
      #expect(Double(burnerWall) > 0.8 * wallTicks && Double(burnerWall) < 1.2 * wallTicks)
      #expect(Double(sleeperWall) > 0.8 * wallTicks && Double(sleeperWall) < 1.2 * wallTicks)
      #expect(wallProfile.count(containing: "bothKindsBurn") > Int64(0.5 * wallTicks))
      // cpu: the burner, about once per interval of its CPU time (it shares
      // two cores with the test); the sleeper hardly ever.
      #expect(Double(burnerCPU) > 0.35 * cpuTicks && Double(burnerCPU) < 1.2 * cpuTicks, "\(burnerCPU)")
      #expect(Double(sleeperCPU) < 0.1 * cpuTicks)
    }
  }
}
