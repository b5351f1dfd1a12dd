import CAppProfiler

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One long-lived thread for background symbolication (source frames that
/// did not fit a profile's budget) and for the Runtime symbolicator.
///
/// The toolchain's symbolicator keeps its parsed ELF images and DWARF in a
/// per-thread cache. Run on whatever thread the caller happens to be on, a
/// profile that meets new addresses re-reads the images (measured: ~0.5 s
/// per profile for a NIO process). On one dedicated thread the cache stays
/// warm. The thread is created when first needed (never in an idle
/// process, and not by a profile whose source frames fit its budget) and
/// then waits on a condition variable; after `fork()` the child starts its
/// own.
final class SymbolicationThread: @unchecked Sendable {
  static let shared = SymbolicationThread()

  // All below guarded by `mutex`.
  private var mutex = pthread_mutex_t()
  private var wake = pthread_cond_t()
  private var finished = pthread_cond_t()
  private var job: (() -> Void)?
  private var jobDone = false
  /// Work nobody waits for, run when no `job` is waiting.
  private var later: [() -> Void] = []
  private var ownerPID: pid_t = 0
  // Callers take turns.
  private var turn = pthread_mutex_t()

  private init() {
    pthread_mutex_init(&mutex, nil)
    pthread_mutex_init(&turn, nil)
    pthread_cond_init(&wake, nil)
    pthread_cond_init(&finished, nil)
  }

  /// Runs `body` on the symbolication thread and returns its result.
  func run<T>(_ body: () -> T) -> T {
    pthread_mutex_lock(&turn)
    defer { pthread_mutex_unlock(&turn) }
    return withoutActuallyEscaping(body) { escapable -> T in
      var result: T? = nil
      pthread_mutex_lock(&mutex)
      startIfNeeded()
      job = { result = escapable() }
      jobDone = false
      pthread_cond_signal(&wake)
      while !jobDone { pthread_cond_wait(&finished, &mutex) }
      pthread_mutex_unlock(&mutex)
      return result!
    }
  }

  /// Queues `body` for when the thread has nothing a caller waits for.
  func runLater(_ body: @escaping () -> Void) {
    pthread_mutex_lock(&mutex)
    startIfNeeded()
    later.append(body)
    pthread_cond_signal(&wake)
    pthread_mutex_unlock(&mutex)
  }

  /// Called with `mutex` held.
  private func startIfNeeded() {
    guard ownerPID != getpid() else { return }
    ownerPID = getpid()
    var thread = pthread_t()
    var attributes = pthread_attr_t()
    pthread_attr_init(&attributes)
    pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
    let me = Unmanaged.passUnretained(self).toOpaque()
    pthread_create(&thread, &attributes, { argument in
      let worker = Unmanaged<SymbolicationThread>.fromOpaque(argument!).takeUnretainedValue()
      worker.loop()
      return nil
    }, me)
    pthread_attr_destroy(&attributes)
  }

  private func loop() {
    // The profiler's own work is not the application's allocations.
    ProfilerThreads.adoptCurrent(name: "app-prof-symbol")
    pthread_mutex_lock(&mutex)
    while true {
      while job == nil && later.isEmpty { pthread_cond_wait(&wake, &mutex) }
      if let work = job {
        job = nil
        pthread_mutex_unlock(&mutex)
        work()
        pthread_mutex_lock(&mutex)
        jobDone = true
        pthread_cond_signal(&finished)
      } else {
        let work = later.removeFirst()
        pthread_mutex_unlock(&mutex)
        work()
        pthread_mutex_lock(&mutex)
      }
    }
  }
}
