import AppProfiler

#if canImport(Glibc)
import Glibc
#endif

/// One uncontended lock/unlock pair, called through the executable's GOT
/// (redirected to the lock wrappers while a block or mutex session runs).
@inline(never) func lockPairs(_ mutex: UnsafeMutablePointer<pthread_mutex_t>, _ count: Int) {
  for _ in 0..<count {
    pthread_mutex_lock(mutex)
    pthread_mutex_unlock(mutex)
  }
}

func lockPairNanoseconds(_ mutex: UnsafeMutablePointer<pthread_mutex_t>, pairs: Int) -> Double {
  var start = timespec()
  var end = timespec()
  clock_gettime(CLOCK_MONOTONIC, &start)
  lockPairs(mutex, pairs)
  clock_gettime(CLOCK_MONOTONIC, &end)
  let nanoseconds = Double(end.tv_sec - start.tv_sec) * 1e9 + Double(end.tv_nsec - start.tv_nsec)
  return nanoseconds / Double(pairs)
}

/// `lock-pair ROUNDS`: nanoseconds per uncontended pthread_mutex_lock +
/// unlock pair without the lock wrappers and with them (a block session
/// running), interleaved in one process, ROUNDS × 10 M pairs each; the
/// median of each side and their difference.
func benchLockPair(rounds: Int) throws {
  let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
  pthread_mutex_init(mutex, nil)
  let pairs = 10_000_000
  _ = lockPairNanoseconds(mutex, pairs: pairs)  // warm
  var without: [Double] = []
  var with: [Double] = []
  for _ in 0..<rounds {
    without.append(lockPairNanoseconds(mutex, pairs: pairs))
    let session = try Profiler.shared.start(mode: .block)
    with.append(lockPairNanoseconds(mutex, pairs: pairs))
    session.cancel()
  }
  func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
  let plain = median(without)
  let wrapped = median(with)
  print(
    "lock-pair: \(rounds) rounds × \(pairs) uncontended lock+unlock pairs: without wrappers "
      + "\(String(format: "%.2f", plain)) ns/pair, with (block session running) \(String(format: "%.2f", wrapped)) ns/pair, "
      + "difference \(String(format: "%.2f", wrapped - plain)) ns/pair")
}
