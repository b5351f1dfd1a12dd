import CAppProfiler
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Workloads with known shapes for the sampling tests. Every function that a
/// test looks for is `@inline(never)` and has a distinctive name.

/// A joinable pthread running a closure.
final class TestThread: @unchecked Sendable {
  private var thread = pthread_t()
  private let body: @Sendable () -> Void
  private let name: String
  let tid = Atomic<Int32>(0)

  init(name: String = "test-worker", _ body: @escaping @Sendable () -> Void) {
    self.body = body
    self.name = name
    let box = Unmanaged.passRetained(self).toOpaque()
    let result = pthread_create(&thread, nil, { argument in
      let me = Unmanaged<TestThread>.fromOpaque(argument!).takeRetainedValue()
      let tid = cap_gettid()
      setThreadName(tid, me.name)
      me.tid.store(tid, ordering: .releasing)
      me.body()
      return nil
    }, box)
    precondition(result == 0, "pthread_create failed: \(result)")
  }

  func join() {
    pthread_join(thread, nil)
  }

  /// Lets the thread end on its own (no join).
  func detach() {
    pthread_detach(thread)
  }

  /// Waits until the thread has started and returns its tid.
  func waitForTID() -> Int32 {
    while tid.load(ordering: .acquiring) == 0 { usleep(100) }
    return tid.load(ordering: .acquiring)
  }
}

/// A flag workers poll to know when to stop.
final class StopFlag: Sendable {
  private let flag = Atomic<Bool>(false)
  var isSet: Bool { flag.load(ordering: .relaxed) }
  func set() { flag.store(true, ordering: .relaxed) }
}

func monotonicNanoseconds() -> UInt64 {
  var ts = timespec()
  clock_gettime(CLOCK_MONOTONIC, &ts)
  return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

func threadCPUNanoseconds() -> UInt64 {
  var ts = timespec()
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
  return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// Pure arithmetic the optimizer cannot remove; ~1 µs per 1000 rounds.
@inline(never)
func spin(_ rounds: Int) -> UInt64 {
  var x: UInt64 = 0x9E37_79B9_7F4A_7C15
  for i in 0..<rounds {
    x = (x &* 6_364_136_223_846_793_005) &+ UInt64(i)
    x ^= x >> 29
  }
  return x
}

let sink = Atomic<UInt64>(0)

@inline(never)
func burnHeavyWorkload(_ stop: StopFlag) {
  while !stop.isSet { sink.wrappingAdd(spin(20_000), ordering: .relaxed) }
}

@inline(never)
func burnLightWorkload(_ stop: StopFlag) {
  while !stop.isSet {
    let start = monotonicNanoseconds()
    while monotonicNanoseconds() - start < 1_000_000 { sink.wrappingAdd(spin(2_000), ordering: .relaxed) }
    usleep(2_000)
  }
}

@inline(never)
func gammaWorkload(_ stop: StopFlag) {
  while !stop.isSet { sink.wrappingAdd(spin(10_000), ordering: .relaxed) }
}

@inline(never)
func betaWorkload(_ stop: StopFlag) {
  gammaWorkload(stop)
  sink.wrappingAdd(1, ordering: .relaxed)
}

@inline(never)
func alphaWorkload(_ stop: StopFlag) {
  betaWorkload(stop)
  sink.wrappingAdd(1, ordering: .relaxed)
}

/// A thread parked in pthread_cond_wait until released.
final class ConditionWaiter: @unchecked Sendable {
  private var mutex = pthread_mutex_t()
  private var condition = pthread_cond_t()
  private var released = false
  private var thread: TestThread?

  init() {
    pthread_mutex_init(&mutex, nil)
    pthread_cond_init(&condition, nil)
    thread = TestThread(name: "cond-waiter") { [self] in self.waitUntilReleased() }
  }

  var tid: Int32 { thread!.waitForTID() }

  @inline(never)
  func waitUntilReleased() {
    pthread_mutex_lock(&mutex)
    while !released { pthread_cond_wait(&condition, &mutex) }
    pthread_mutex_unlock(&mutex)
  }

  func release() {
    pthread_mutex_lock(&mutex)
    released = true
    pthread_cond_broadcast(&condition)
    pthread_mutex_unlock(&mutex)
    thread?.join()
  }
}

/// Names a thread of this process (what /proc/self/task/<tid>/comm shows).
func setThreadName(_ tid: Int32, _ name: String) {
  let fd = open("/proc/self/task/\(tid)/comm", O_WRONLY)
  guard fd >= 0 else { return }
  let bytes = Array(name.utf8.prefix(15))
  _ = bytes.withUnsafeBufferPointer { write(fd, $0.baseAddress, $0.count) }
  close(fd)
}
