import AppProfiler
import CAppProfiler
import Foundation
import NIOConcurrencyHelpers
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A pthread mutex shared by the contending threads.
final class SharedMutex: @unchecked Sendable {
  let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
  init() { pthread_mutex_init(mutex, nil) }
  deinit {
    pthread_mutex_destroy(mutex)
    mutex.deallocate()
  }
}

/// Holds the mutex for `milliseconds` of computing, then unlocks it: the
/// holder's stack at the unlock (mutex profile).
@inline(never) func holdLockWhileComputing(_ shared: SharedMutex, milliseconds: UInt64, locked: () -> Void) {
  pthread_mutex_lock(shared.mutex)
  locked()
  let end = monotonicNanoseconds() + milliseconds * 1_000_000
  var spin = 0
  while monotonicNanoseconds() < end { spin &+= 1 }
  consume(spin)
  pthread_mutex_unlock(shared.mutex)
}

/// Waits for the mutex; returns how long the lock call took (block profile).
@inline(never) func waitForContendedLock(_ shared: SharedMutex) -> UInt64 {
  let start = monotonicNanoseconds()
  pthread_mutex_lock(shared.mutex)
  let waited = monotonicNanoseconds() - start
  pthread_mutex_unlock(shared.mutex)
  return waited
}

/// `rounds` times: the holder takes the lock for 4 ms of computing; the
/// waiter asks for it as soon as it is held and so waits up to 4 ms.
/// Returns the waiter's measured wait in total.
func contend(rounds: Int) -> UInt64 {
  let shared = SharedMutex()
  let measured = Atomic<UInt64>(0)
  let held = Atomic<Int>(0)
  onThreads(2) { index in
    for round in 1...rounds {
      if index == 0 {
        // Holder: signals its hold, then holds.
        holdLockWhileComputing(shared, milliseconds: 4) { held.store(round, ordering: .releasing) }
        // Lets the waiter in before the next round.
        while held.load(ordering: .acquiring) != -round { sched_yield() }
      } else {
        while held.load(ordering: .acquiring) != round { sched_yield() }
        measured.add(waitForContendedLock(shared), ordering: .relaxed)
        held.store(-round, ordering: .releasing)
      }
    }
  }
  return measured.load(ordering: .relaxed)
}

/// `rounds` times on two threads: `hold` takes a lock, calls `locked`, and
/// keeps the lock a while; `wait` asks for it as soon as the holder has it.
func takeTurns(
  rounds: Int, hold: @escaping @Sendable (_ locked: () -> Void) -> Void, wait: @escaping @Sendable () -> Void
) {
  let turn = Atomic<Int>(0)
  onThreads(2) { index in
    for round in 1...rounds {
      if index == 0 {
        hold { turn.store(round, ordering: .releasing) }
        while turn.load(ordering: .acquiring) != -round { sched_yield() }
      } else {
        while turn.load(ordering: .acquiring) != round { sched_yield() }
        wait()
        turn.store(-round, ordering: .releasing)
      }
    }
  }
}

extension Profile {
  /// Total delay (ns) of samples, and of those whose stack holds a
  /// function whose name contains `fragment`.
  func delay(under fragment: String) -> (total: Int64, under: Int64) {
    var total: Int64 = 0
    var under: Int64 = 0
    for thread in threads {
      for sample in thread.samples {
        let delay = value(sample, "delay")
        total += delay
        if names(ofStack: sample.stack).contains(where: { $0.contains(fragment) }) { under += delay }
      }
    }
    return (total, under)
  }
}

extension SamplingSuite {
  @Suite struct LockProfileTests {
    @Test func blockAndMutexProfilesMeasureAContendedMutex() throws {
      var options = SessionOptions()
      options.lockSamplingRate = .microseconds(100)
      let block = try Profiler.shared.start(mode: .block, options: options)
      let mutex = try Profiler.shared.start(mode: .mutex, options: options)
      let measured = contend(rounds: 60)
      let blockProfile = try block.stopSynchronously()
      let mutexProfile = try mutex.stopSynchronously()

      #expect(blockProfile.sampleTypes.map(\.type) == ["contentions", "delay"])
      #expect(blockProfile.sampleTypes[blockProfile.defaultSampleType].unit == "nanoseconds")
      let waits = blockProfile.delay(under: "waitForContendedLock")
      let holds = mutexProfile.delay(under: "holdLockWhileComputing")
      let ratio = Double(waits.total) / Double(measured)
      let mutexRatio = Double(holds.total) / Double(measured)
      print(
        "lock: measured \(measured / 1000) µs; block \(waits.total / 1000) µs (\(ratio)), under the waiter "
          + "\(waits.under / 1000) µs; mutex \(holds.total / 1000) µs (\(mutexRatio)), under the holder \(holds.under / 1000) µs; "
          + "contentions \(blockProfile.metadata["lock_contentions_seen"] ?? "?")")
      #expect(measured > 60 * 1_000_000, "the waiter waited \(measured) ns")
      #expect((0.7...1.3).contains(ratio), "block delay \(waits.total) ns vs measured \(measured) ns")
      #expect(Double(waits.under) >= 0.8 * Double(waits.total))
      #expect((0.7...1.3).contains(mutexRatio), "mutex delay \(holds.total) ns vs measured \(measured) ns")
      #expect(Double(holds.under) >= 0.8 * Double(holds.total))
      // The holder's stack, not the waiter's.
      #expect(mutexProfile.delay(under: "waitForContendedLock").under < holds.total / 5)
      #expect(cap_lock_redirected_entries() == 0, "entries written back at stop")
    }

    @Test func nsLockContentionShowsTheCaller() throws {
      // Foundation's NSLock locks in libFoundation.so, through its own GOT.
      let lock = NSLock()
      let session = try Profiler.shared.start(mode: .block)
      takeTurns(rounds: 10, hold: { locked in lock.lock(); locked(); usleep(3000); lock.unlock() }, wait: { nsLockWaiter(lock) })
      let profile = try session.stopSynchronously()
      let waits = profile.delay(under: "nsLockWaiter")
      #expect(waits.total > 10 * 1_000_000, "10 waits of up to 3 ms: \(waits.total) ns")
      #expect(Double(waits.under) >= 0.8 * Double(waits.total))
    }

    @Test func nioLockContentionShowsTheCaller() throws {
      let lock = NIOLock()
      let session = try Profiler.shared.start(mode: .block)
      takeTurns(
        rounds: 20, hold: { locked in lock.lock(); locked(); usleep(3000); lock.unlock() },
        wait: { Profiler.withLabels(["route": "/locked"]) { nioLockWaiter(lock) } })
      let profile = try session.stopSynchronously()
      let waits = profile.delay(under: "nioLockWaiter")
      #expect(waits.total > 20 * 1_000_000, "20 waits of up to 3 ms: \(waits.total) ns")
      #expect(Double(waits.under) >= 0.8 * Double(waits.total))
      #expect(profile.delay(under: "NIOLock").under >= waits.under / 2, "the NIOLock frame is on the stack")
      // The waiter's labels are on its samples, as on every kind.
      let labelled = profile.threads.flatMap(\.samples).filter { $0.labels["route"] == "/locked" }
      #expect(labelled.reduce(0) { $0 + profile.value($1, "delay") } >= waits.under * 9 / 10)
    }

    /// A wait inside a Swift task: its async callers are on the sample.
    @Test func waitInATaskShowsItsAsyncCallers() async throws {
      let lock = NIOLock()
      let session = try Profiler.shared.start(mode: .block)
      for _ in 0..<10 {
        let held = Atomic<Bool>(false)
        let holder = Thread {
          lock.lock()
          held.store(true, ordering: .releasing)
          usleep(3000)
          lock.unlock()
        }
        holder.start()
        while !held.load(ordering: .acquiring) { await Task.yield() }
        await lockingTaskOuter(lock)
      }
      let profile = try session.stopSynchronously()
      let waits = profile.delay(under: "nioLockWaiter")
      let async = profile.delay(under: "lockingTaskOuter")
      #expect(waits.under > 5_000_000, "\(waits)")
      #expect(Double(async.under) >= 0.8 * Double(waits.under), "async callers on \(async.under) of \(waits.under) ns")
    }

    /// A child forked while the wrappers are installed has its entries
    /// written back at once (its parent's drain thread does not exist there)
    /// and locks as usual.
    @Test func forkedChildLocksWithoutTheWrappers() throws {
      let session = try Profiler.shared.start(mode: .mutex)
      defer { session.cancel() }
      #expect(cap_lock_redirected_entries() > 0, "the wrappers are installed")
      let shared = SharedMutex()
      let child = fork()
      if child == 0 {
        pthread_mutex_lock(shared.mutex)
        pthread_mutex_unlock(shared.mutex)
        _exit(cap_lock_redirected_entries() == 0 ? 0 : 1)
      }
      var status: Int32 = 0
      waitpid(child, &status, 0)
      #expect(status == 0, "the child exited with status \(status)")
    }

    @Test func uncontendedLocksAndRwlocksStayCorrect() throws {
      let session = try Profiler.shared.start(mode: .block)
      // Recursive and error-checking mutexes keep their semantics through the wrappers.
      var attributes = pthread_mutexattr_t()
      pthread_mutexattr_init(&attributes)
      pthread_mutexattr_settype(&attributes, Int32(PTHREAD_MUTEX_RECURSIVE))
      var recursive = pthread_mutex_t()
      pthread_mutex_init(&recursive, &attributes)
      #expect(pthread_mutex_lock(&recursive) == 0)
      #expect(pthread_mutex_lock(&recursive) == 0)
      #expect(pthread_mutex_unlock(&recursive) == 0)
      #expect(pthread_mutex_unlock(&recursive) == 0)
      pthread_mutexattr_settype(&attributes, Int32(PTHREAD_MUTEX_ERRORCHECK))
      var checked = pthread_mutex_t()
      pthread_mutex_init(&checked, &attributes)
      #expect(pthread_mutex_lock(&checked) == 0)
      #expect(pthread_mutex_lock(&checked) == EDEADLK)
      #expect(pthread_mutex_unlock(&checked) == 0)
      #expect(pthread_mutex_unlock(&checked) == EPERM)
      // A contended rwlock: the writer waits for the reader.
      let rwlock = UnsafeMutablePointer<pthread_rwlock_t>.allocate(capacity: 1)
      pthread_rwlock_init(rwlock, nil)
      let readerIn = Atomic<Bool>(false)
      let pointer = UInt(bitPattern: rwlock)
      onThreads(2) { index in
        let rwlock = UnsafeMutablePointer<pthread_rwlock_t>(bitPattern: pointer)!
        if index == 0 {
          pthread_rwlock_rdlock(rwlock)
          readerIn.store(true, ordering: .releasing)
          usleep(20_000)
          pthread_rwlock_unlock(rwlock)
        } else {
          while !readerIn.load(ordering: .acquiring) { sched_yield() }
          rwlockWriter(rwlock)
        }
      }
      let profile = try session.stopSynchronously()
      pthread_rwlock_destroy(rwlock)
      rwlock.deallocate()
      let waits = profile.delay(under: "rwlockWriter")
      #expect(waits.under > 10_000_000, "the writer waited ~20 ms: \(waits.under) ns")
    }
  }
}

@inline(never) func nioLockWaiter(_ lock: NIOLock) {
  lock.lock()
  lock.unlock()
}

@inline(never) func lockingTaskInner(_ lock: NIOLock) async {
  await Task.yield()
  nioLockWaiter(lock)
}

@inline(never) func lockingTaskOuter(_ lock: NIOLock) async {
  await lockingTaskInner(lock)
}

@inline(never) func nsLockWaiter(_ lock: NSLock) {
  lock.lock()
  lock.unlock()
}

@inline(never) func rwlockWriter(_ rwlock: UnsafeMutablePointer<pthread_rwlock_t>) {
  pthread_rwlock_wrlock(rwlock)
  pthread_rwlock_unlock(rwlock)
}
