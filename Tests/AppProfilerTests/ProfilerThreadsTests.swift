@_spi(Support) @testable import AppProfiler
import CAppProfiler
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The profiler's threads are left out of the app's profiles while they
/// live, and only then: an app thread that gets an ended profiler thread's
/// id (ids are reused) must not be left out. (Seen: after 100,000 threads
/// of churn, a test thread reused the id of an ended drain thread and all
/// its samples vanished from the profile.)
@Suite struct ProfilerThreadsTests {
  @Test func onlyLiveThreadsAreTheProfilers() {
    let tid = Atomic<Int32>(0)
    let release = Atomic<Bool>(false)
    let thread = ProfilerThread(name: "app-prof-test") {
      tid.store(cap_gettid(), ordering: .releasing)
      while !release.load(ordering: .acquiring) { usleep(1_000) }
    }
    while tid.load(ordering: .acquiring) == 0 { usleep(1_000) }
    #expect(ProfilerThreads.contains(tid.load(ordering: .acquiring)))
    release.store(true, ordering: .releasing)
    thread.join()
    #expect(!ProfilerThreads.contains(tid.load(ordering: .acquiring)), "an ended thread's id is still excluded")
  }
}
