import AppProfiler

#if canImport(Glibc)
import Glibc
#endif

/// Cost of one wall tick with N threads, most of them blocked, and the
/// profiler's extra process CPU per second of profiling.
func benchWallCost(threads: Int, hertz: Int, seconds: Double) async throws {
  let flag = Flag()
  var mutex = pthread_mutex_t()
  var condition = pthread_cond_t()
  pthread_mutex_init(&mutex, nil)
  pthread_cond_init(&condition, nil)
  nonisolated(unsafe) let mutexPointer = withUnsafeMutablePointer(to: &mutex) { $0 }
  nonisolated(unsafe) let conditionPointer = withUnsafeMutablePointer(to: &condition) { $0 }
  // One busy thread, the rest blocked on a condition variable.
  var workers = [Worker { burn(flag) }]
  for _ in 1..<threads {
    workers.append(Worker {
      pthread_mutex_lock(mutexPointer)
      while !flag.isSet { pthread_cond_wait(conditionPointer, mutexPointer) }
      pthread_mutex_unlock(mutexPointer)
    })
  }
  workers.forEach { _ = $0.waitForTID() }
  usleep(100_000)
  let busyTID = workers[0].waitForTID()
  let cpuBefore = processCPUTime() - cpuTime(ofThread: busyTID)
  let profile = try await Profiler.shared.record(
    mode: .wall, duration: .milliseconds(Int(seconds * 1000)), interval: .nanoseconds(1_000_000_000 / hertz))
  let cpuAfter = processCPUTime() - cpuTime(ofThread: busyTID)
  flag.set()
  pthread_mutex_lock(&mutex)
  pthread_cond_broadcast(&condition)
  pthread_mutex_unlock(&mutex)
  workers.forEach { $0.join() }
  let tickMean = Double(profile.metadata["wall_tick_mean_ns"] ?? "0") ?? 0
  let overheadPerSecond = Double(cpuAfter - cpuBefore) / seconds / 1e6
  print(
    "wall-cost threads=\(threads) hz=\(hertz) tick_mean=\(format(tickMean / 1000, 2))us ticks=\(profile.metadata["wall_ticks"] ?? "?") missed=\(profile.statistics.missedTicks) signals=\(profile.metadata["wall_signals_sent"] ?? "?") profiler_cpu=\(format(overheadPerSecond))ms/s"
  )
}
