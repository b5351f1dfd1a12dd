import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Threads and clocks for the scenarios.
final class Worker: @unchecked Sendable {
  private var thread = pthread_t()
  private let body: @Sendable () -> Void
  let tid = Atomic<Int32>(0)

  init(_ body: @escaping @Sendable () -> Void) {
    self.body = body
    let box = Unmanaged.passRetained(self).toOpaque()
    pthread_create(&thread, nil, { argument in
      let me = Unmanaged<Worker>.fromOpaque(argument!).takeRetainedValue()
      me.tid.store(Int32(truncatingIfNeeded: syscallGettid()), ordering: .releasing)
      me.body()
      return nil
    }, box)
  }

  func join() { pthread_join(thread, nil) }

  func waitForTID() -> Int32 {
    while tid.load(ordering: .acquiring) == 0 { usleep(100) }
    return tid.load(ordering: .acquiring)
  }
}

@_silgen_name("gettid") func syscallGettid() -> Int32

final class Flag: Sendable {
  private let value = Atomic<Bool>(false)
  var isSet: Bool { value.load(ordering: .relaxed) }
  func set() { value.store(true, ordering: .relaxed) }
}

let sink = Atomic<UInt64>(0)

func now(_ clock: clockid_t = CLOCK_MONOTONIC) -> UInt64 {
  var ts = timespec()
  clock_gettime(clock, &ts)
  return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// CPU time of a thread of this process (its per-thread CPU clock).
func cpuTime(ofThread tid: Int32) -> UInt64 {
  var ts = timespec()
  let clock = clockid_t(bitPattern: (~UInt32(bitPattern: tid)) << 3 | 6)
  guard clock_gettime(clock, &ts) == 0 else { return 0 }
  return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// CPU time of the whole process.
func processCPUTime() -> UInt64 { now(CLOCK_PROCESS_CPUTIME_ID) }

@inline(never)
func burn(_ flag: Flag) {
  var x: UInt64 = 1
  while !flag.isSet {
    for i in 0..<10_000 { x = (x &* 6_364_136_223_846_793_005) &+ UInt64(i) }
    sink.wrappingAdd(x, ordering: .relaxed)
  }
}

func format(_ value: Double, _ digits: Int = 1) -> String {
  var scale = 1.0
  for _ in 0..<digits { scale *= 10 }
  let rounded = (value * scale).rounded() / scale
  return "\(rounded)"
}
