import AppProfiler
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

extension SamplingSuite {
  /// Acceptance 3: a sleeping thread is interrupted at most once by a wall
  /// profile and never by a cpu profile.
  @Suite struct Interruptions {
    @Test(arguments: [Profile.Mode.wall, .cpu])
    func nanosleepIsInterruptedAtMostOnce(mode: Profile.Mode) async throws {
      let interruptions = Atomic<Int>(0)
      let sleeping = Atomic<Bool>(false)
      let sleeper = TestThread(name: "nanosleeper") {
        var request = timespec(tv_sec: 2, tv_nsec: 0)
        var remaining = timespec()
        sleeping.store(true, ordering: .releasing)
        while nanosleep(&request, &remaining) == -1 && errno == EINTR {
          interruptions.add(1, ordering: .relaxed)
          request = remaining
        }
      }
      _ = sleeper.waitForTID()
      while !sleeping.load(ordering: .acquiring) { usleep(100) }
      usleep(20_000)
      let profile = try await Profiler.shared.record(mode: mode, duration: .seconds(1), interval: .milliseconds(1))
      sleeper.join()
      let count = interruptions.load(ordering: .relaxed)
      print("\(mode): nanosleep interrupted \(count) times; \(profile.totalCount) samples")
      if mode == .wall {
        #expect(count <= 1)
      } else {
        #expect(count == 0)
      }
    }
  }
}
