import AppProfiler
import Testing

#if canImport(Glibc)
import Glibc
#endif

extension SamplingSuite {
  /// Acceptance 2: named stacks in order; blocked threads in wall and cpu mode.
  @Suite struct Stacks {
    static let chain = ["alphaWorkload", "betaWorkload", "gammaWorkload"]

    @Test(.disabled(if: underThreadSanitizer, "TSan runs signal handlers late, at a safe point, with the interrupted registers of a thread that has moved on"), arguments: [Profile.Mode.cpu, .wall])
    func alphaBetaGammaInOrder(mode: Profile.Mode) async throws {
      let stop = StopFlag()
      let worker = TestThread(name: "chain") { alphaWorkload(stop) }
      let tid = worker.waitForTID()
      let waiter = ConditionWaiter()
      let waiterTID = waiter.tid
      usleep(20_000)
      let profile = try await Profiler.shared.record(mode: mode, duration: .seconds(1), interval: .milliseconds(1))
      stop.set()
      worker.join()
      waiter.release()

      let thread = try #require(profile.thread(tid))
      var complete: Int64 = 0
      for sample in thread.samples where containsInOrder(profile.names(ofStack: sample.stack), Self.chain) {
        complete += profile.count(sample)
      }
      let ratio = Double(complete) / Double(max(profile.totalCount(of: thread), 1))
      if ratio < 0.95 {
        for sample in thread.samples where !containsInOrder(profile.names(ofStack: sample.stack), Self.chain) {
          print("broken:", profile.names(ofStack: sample.stack).suffix(4), profile.stacks[sample.stack].prefix(3).map { String(profile.locations[$0].address, radix: 16) })
          break
        }
        var leaves: [String: Int] = [:]
        for sample in thread.samples where !containsInOrder(profile.names(ofStack: sample.stack), Self.chain) {
          leaves[profile.names(ofStack: sample.stack).last ?? "?", default: 0] += 1
        }
        print("broken leaves:", leaves)
      }
      print("\(mode) chain: \(complete)/\(profile.totalCount(of: thread)) = \(ratio)")
      #expect(profile.totalCount(of: thread) > 100)
      #expect(ratio >= 0.95, "alpha → beta → gamma in \(ratio) of samples")

      let waiterSamples = profile.thread(waiterTID)
      if mode == .wall {
        let ticks = Int64(profile.metadata["wall_ticks"] ?? "0") ?? 0
        let waiterCount = waiterSamples.map { profile.totalCount(of: $0) } ?? 0
        let idle = waiterSamples?.samples.filter(\.isIdle).reduce(Int64(0)) { $0 + profile.count($1) } ?? 0
        print("wall waiter: \(waiterCount) samples, \(idle) idle, ticks \(ticks)")
        #expect(ticks > 500)
        #expect(Double(waiterCount) >= 0.95 * Double(ticks), "waiter in \(waiterCount) of \(ticks) ticks")
        #expect(Double(idle) >= 0.95 * Double(waiterCount), "only \(idle) of \(waiterCount) tagged idle")
      } else {
        let waiterCount = waiterSamples.map { profile.totalCount(of: $0) } ?? 0
        #expect(Double(waiterCount) < 0.02 * Double(profile.totalCount), "blocked thread got \(waiterCount) cpu samples")
      }
    }
  }
}

extension SamplingSuite {
  /// A thread that wakes every 0.5 ms runs in every 1 ms interval, but is
  /// nearly always inside nanosleep when sampled: tagged idle there.
  @Suite struct BlockingLeafIsIdle {
    @Test func frequentSleeperIsMostlyIdle() async throws {
      let stop = StopFlag()
      let napper = TestThread(name: "napper") {
        while !stop.isSet { usleep(500) }
      }
      let tid = napper.waitForTID()
      let profile = try await Profiler.shared.record(mode: .wall, duration: .milliseconds(500), interval: .milliseconds(1))
      stop.set()
      napper.join()
      let thread = try #require(profile.thread(tid))
      let idle = thread.samples.filter(\.isIdle).reduce(Int64(0)) { $0 + profile.count($1) }
      print("napper: \(idle)/\(profile.totalCount(of: thread)) idle")
      #expect(Double(idle) >= 0.8 * Double(profile.totalCount(of: thread)))
    }
  }
}
