import CAppProfiler
import Synchronization

/// The profiler's own threads (drain, symbolication, allocation drain,
/// profile requests, the profile server's event loop), so profiles of the
/// app leave them out unless asked (`SessionOptions.includeProfilerThreads`,
/// `include_profiler=1`). Thread dumps always list every thread.
///
/// Threads are remembered after they end (the drain thread of a session has
/// ended by the time its profile is built), the last 1024 of them: enough
/// for every thread of a session, bounded for a process that runs forever.
@_spi(Support) public enum ProfilerThreads {
  private static let recent = Mutex<(set: Set<Int32>, order: [Int32])>(([], []))
  static let limit = 1024

  /// Marks the calling thread as the profiler's.
  public static func registerCurrent() {
    let tid = cap_gettid()
    recent.withLock { state in
      guard state.set.insert(tid).inserted else { return }
      state.order.append(tid)
      if state.order.count > limit {
        state.set.remove(state.order.removeFirst())
      }
    }
  }

  /// Makes the calling thread one of the profiler's: named `name` (15 bytes
  /// show), its allocations not sampled, left out of the app's profiles.
  static func adoptCurrent(name: String) {
    _ = cap_alloc_set_thread_ignored(1)
    nameCurrentThread(name)
    registerCurrent()
  }

  /// Thread ids of the profiler's threads, current and recent.
  static var all: Set<Int32> { recent.withLock { $0.set } }
}
