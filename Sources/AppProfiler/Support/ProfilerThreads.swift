import CAppProfiler
import Synchronization

/// The profiler's own threads (drain, symbolication, allocation drain,
/// profile requests, the profile server's event loop), so profiles of the
/// app leave them out unless asked (`SessionOptions.includeProfilerThreads`,
/// `include_profiler=1`). Thread dumps always list every thread.
///
/// Only live threads are listed: a thread leaves the list when it ends, so
/// an app thread that later gets a reused thread id is not mistaken for
/// one of ours. A session decides when it first drains a thread's samples
/// (``SampleCollector``) — the drain thread is alive then, even if it has
/// ended by the time the profile is built.
@_spi(Support) public enum ProfilerThreads {
  private static let live = Mutex<Set<Int32>>([])

  /// Marks the calling thread as the profiler's (until ``unregisterCurrent()``).
  public static func registerCurrent() {
    let tid = cap_gettid()
    _ = live.withLock { $0.insert(tid) }
  }

  /// The calling thread is no longer the profiler's (it is about to end).
  public static func unregisterCurrent() {
    let tid = cap_gettid()
    _ = live.withLock { $0.remove(tid) }
  }

  /// Makes the calling thread one of the profiler's: named `name` (15 bytes
  /// show), its allocations not sampled, left out of the app's profiles.
  static func adoptCurrent(name: String) {
    _ = cap_alloc_set_thread_ignored(1)
    _ = cap_lock_set_thread_ignored(1)
    nameCurrentThread(name)
    registerCurrent()
  }

  /// ``registerCurrent()`` and the thread's allocations and lock waits are
  /// not sampled either, its name kept: for the profile server's event loop, whose
  /// work (symbol lookups, answers) is the profiler's, not the app's.
  public static func registerCurrentIgnoringAllocations() {
    _ = cap_alloc_set_thread_ignored(1)
    _ = cap_lock_set_thread_ignored(1)
    registerCurrent()
  }

  /// Whether `tid` is a live thread of the profiler's.
  static func contains(_ tid: Int32) -> Bool { live.withLock { $0.contains(tid) } }
}
