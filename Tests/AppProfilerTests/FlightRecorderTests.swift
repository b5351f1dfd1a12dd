@testable import AppProfiler
import Testing

#if canImport(Glibc)
import Glibc
#endif

@inline(never) func flightBurst(_ stop: StopFlag) -> Int { burnSlice(6) }
@inline(never) func flightSteady(_ stop: StopFlag) -> Int { burnSlice(7) }

extension SamplingSuite {
  /// Issue 20: the flight recorder keeps the last seconds and answers at once.
  @Suite struct FlightRecorderSuite {
    /// A 3 s burst of a known function, 20 s before asking, is in the last
    /// 30 s with its share of the CPU time (± 5 pp), next to a steady burner —
    /// and an on-demand 1 kHz cpu profile runs meanwhile (samplers of its own).
    @Test func burstTwentySecondsAgoHasItsShare() throws {
      let recorder = FlightRecorder()
      try recorder.start(seconds: 60)
      defer { recorder.stop() }
      let stop = StopFlag()
      let steady = TestThread(name: "flight-steady") { while !stop.isSet { _ = flightSteady(stop) } }
      let steadyTID = steady.waitForTID()
      let steadyStart = cpuNanoseconds(ofThread: steadyTID)
      let testStart = monotonicNanoseconds()
      usleep(1_000_000)
      let burstStop = StopFlag()
      let burst = TestThread(name: "flight-burst") { while !burstStop.isSet { _ = flightBurst(burstStop) } }
      let burstTID = burst.waitForTID()
      let onDemand = try Profiler.shared.start(mode: .cpu, interval: .milliseconds(1))  // 1 ms, next to the recorder's 19 Hz
      var deadline = monotonicNanoseconds() + 3_000_000_000
      while monotonicNanoseconds() < deadline { usleep(10_000) }
      let burstCPU = cpuNanoseconds(ofThread: burstTID)
      burstStop.set()
      burst.join()
      let onDemandProfile = try onDemand.stopSynchronously()
      deadline = monotonicNanoseconds() + 20_000_000_000
      while monotonicNanoseconds() < deadline { usleep(50_000) }
      let steadyCPU = cpuNanoseconds(ofThread: steadyTID) - steadyStart
      let asked = monotonicNanoseconds()
      let profile = try #require(recorder.profile(mode: .cpu, lastSeconds: 30))
      let answered = monotonicNanoseconds() - asked
      let wall = try #require(recorder.profile(mode: .wall, lastSeconds: 30))
      stop.set()
      steady.join()
      #expect(monotonicNanoseconds() - testStart < 29_000_000_000, "the whole test must fit in the 30 s asked for")

      let burstSamples = Double(profile.count(containing: "flightBurst"))
      let steadySamples = Double(profile.count(containing: "flightSteady"))
      let expected = Double(burstCPU) / Double(burstCPU + steadyCPU)
      let share = burstSamples / max(1, burstSamples + steadySamples)
      print(
        "flight recorder: burst \(Int(burstSamples)) + steady \(Int(steadySamples)) samples, share \(share) "
          + "(expected \(expected) from thread CPU clocks), answered in \(answered / 1000) µs, "
          + "\(profile.metadata["flight_recorder_windows"] ?? "?") windows, kept \(recorder.retainedBytes) bytes; "
          + "on-demand 1 kHz profile: \(onDemandProfile.count(containing: "flightBurst")) burst samples")
      #expect(onDemandProfile.count(containing: "flightBurst") > 1000)
      #expect(profile.period == Int64(FlightRecorder.defaultInterval.nanoseconds))
      #expect(wall.threads.contains { $0.name == "flight-steady" })
      if underThreadSanitizer { return }
      #expect(abs(share - expected) <= 0.05, "share \(share), expected \(expected)")
      // 19 Hz: about 19 samples per second of CPU.
      let perSecond = (burstSamples + steadySamples) / (Double(burstCPU + steadyCPU) / 1e9)
      #expect(perSecond > 12 && perSecond < 24, "\(perSecond) samples per CPU second")
    }
  }
}
