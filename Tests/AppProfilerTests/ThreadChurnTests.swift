import AppProfiler
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

extension SamplingSuite {
  /// Acceptance 4: threads created and joined continuously during 1 kHz sessions.
  @Suite struct ThreadChurn {
    @Test(arguments: [Profile.Mode.cpu, .wall])
    func churnDuringSession(mode: Profile.Mode) async throws {
      let stop = StopFlag()
      let created = Atomic<Int>(0)
      let creators = (0..<2).map { index in
        TestThread(name: "creator-\(index)") {
          while !stop.isSet {
            let child = TestThread(name: "churn") { _ = spin(200) }
            child.join()
            created.add(1, ordering: .relaxed)
          }
        }
      }
      let profile = try await Profiler.shared.record(mode: mode, duration: .seconds(3), interval: .milliseconds(1))
      stop.set()
      creators.forEach { $0.join() }
      let total = created.load(ordering: .relaxed)
      print("\(mode) churn: \(total) threads created, \(profile.threads.count) threads in profile, \(profile.totalCount) samples")
      #expect(total >= 2000)
      #expect(profile.totalCount > 0)
      #expect(!Profiler.shared.isBusy)
    }
  }
}
