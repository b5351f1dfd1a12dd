@_spi(Benchmarks) @_spi(Support) import AppProfiler
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

// The task registry and the task dump (docs/tasks.md): what recording every
// task costs under churn, how long a dump of many suspended tasks takes, and
// dumps while tasks come and go.

@inline(never) func churnLeaf(_ value: Int) async -> Int { value &* 31 &+ 7 }

/// Tasks per second created and finished by `workers` task groups that each
/// add one child task at a time and await it, for `seconds`.
func taskChurn(seconds: Double, workers: Int = 2) async -> Double {
  let deadline = ContinuousClock.now + .milliseconds(Int64(seconds * 1000))
  let created = await withTaskGroup(of: Int.self) { outer in
    for _ in 0..<workers {
      outer.addTask {
        var count = 0
        while ContinuousClock.now < deadline {
          await withTaskGroup(of: Int.self) { group in
            for index in 0..<64 { group.addTask { await churnLeaf(index) } }
            for await value in group { sink.wrappingAdd(UInt64(truncatingIfNeeded: value), ordering: .relaxed) }
          }
          count += 64
        }
        return count
      }
    }
    return await outer.reduce(0, +)
  }
  return Double(created) / seconds
}

/// `task-churn SECONDS`: one measurement (run.sh interleaves processes with
/// the registry on and off, APP_PROFILER_TASKS=0).
func benchTaskChurn(seconds: Double) async {
  _ = await taskChurn(seconds: 0.3)  // warm up the pool
  let cpuBefore = processCPUSeconds()
  let rate = await taskChurn(seconds: seconds)
  let cpu = processCPUSeconds() - cpuBefore
  // Per CPU-second as well: the wall rate on 2 cores swings with scheduling.
  print(
    "task-churn registry=\(Profiler.shared.taskRegistryDescription.hasPrefix("on") ? "on" : "off") tasks_per_s=\(Int(rate)) tasks_per_cpu_s=\(Int(rate * seconds / cpu))"
  )
}

func processCPUSeconds() -> Double {
  var usage = rusage()
  getrusage(RUSAGE_SELF.rawValue, &usage)
  return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
}

final class Parked: Sendable {
  let continuations = Mutex<[CheckedContinuation<Void, Never>]>([])
  var count: Int { continuations.withLock { $0.count } }
  func resumeAll() { for continuation in continuations.withLock({ list in defer { list = [] }; return list }) { continuation.resume() } }
}

@inline(never) func parkedBenchWait(_ parked: Parked) async {
  await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
    parked.continuations.withLock { $0.append(continuation) }
  }
}
@inline(never) func parkedBenchRequest(_ parked: Parked, _ index: Int) async {
  await parkedBenchWait(parked)
  sink.wrappingAdd(UInt64(index), ordering: .relaxed)
}

/// `task-dump N`: N tasks parked in a continuation, dumped 5 times (the
/// first symbolizes; the others are warm): seconds per dump.
func benchTaskDump(tasks: Int) async throws {
  Profiler.shared.prepareTaskDump()
  let parked = Parked()
  for index in 0..<tasks { Task.detached { await parkedBenchRequest(parked, index) } }
  while parked.count < tasks { try await Task.sleep(for: .milliseconds(10)) }
  var times: [Double] = []
  var listed = 0
  for _ in 0..<5 {
    let start = ContinuousClock.now
    let dump = try Profiler.shared.taskDumpSynchronously()
    let elapsed = ContinuousClock.now - start
    times.append(Double(elapsed.components.attoseconds) / 1e18 + Double(elapsed.components.seconds))
    listed = dump.threads.flatMap(\.samples).count
  }
  parked.resumeAll()
  let warm = times.dropFirst().sorted()
  print(
    "task-dump parked=\(tasks) listed=\(listed) first_s=\(String(format: "%.3f", times[0])) warm_median_s=\(String(format: "%.3f", warm[warm.count / 2]))"
  )
}

/// `task-dump-churn DUMPS`: tasks created and finished as fast as two
/// workers can while DUMPS dumps run back to back; prints the churn rate
/// and the dumps' times (a crash or a hang fails the run).
func benchTaskDumpChurn(dumps: Int) async throws {
  Profiler.shared.prepareTaskDump()
  _ = try Profiler.shared.taskDumpSynchronously()
  let done = Atomic<Bool>(false)
  let dumpTimes = Mutex<[Double]>([])
  let failures = Atomic<Int>(0)
  let dumper = BenchThread {
    for _ in 0..<dumps {
      let start = ContinuousClock.now
      do {
        let dump = try Profiler.shared.taskDumpSynchronously()
        sink.wrappingAdd(UInt64(dump.threads.count), ordering: .relaxed)
      } catch {
        failures.add(1, ordering: .relaxed)
      }
      let elapsed = ContinuousClock.now - start
      dumpTimes.withLock { $0.append(Double(elapsed.components.attoseconds) / 1e18 + Double(elapsed.components.seconds)) }
    }
    done.store(true, ordering: .releasing)
  }
  dumper.start()
  let start = ContinuousClock.now
  var created = 0.0
  var rounds = 0
  while !done.load(ordering: .acquiring) {
    created += await taskChurn(seconds: 0.5) * 0.5
    rounds += 1
  }
  let elapsed = ContinuousClock.now - start
  let seconds = Double(elapsed.components.attoseconds) / 1e18 + Double(elapsed.components.seconds)
  let times = dumpTimes.withLock { $0 }.sorted()
  print(
    "task-dump-churn dumps=\(times.count) failed=\(failures.load(ordering: .relaxed)) tasks_per_s=\(Int(created / seconds)) dump_median_ms=\(String(format: "%.1f", times[times.count / 2] * 1000)) dump_max_ms=\(String(format: "%.1f", (times.last ?? 0) * 1000))"
  )
}

/// A plain thread (the dumps must not need the pool the churn keeps busy).
final class BenchThread: @unchecked Sendable {
  private let body: @Sendable () -> Void
  private var thread = pthread_t()
  init(_ body: @escaping @Sendable () -> Void) { self.body = body }
  func start() {
    let box = Unmanaged.passRetained(self).toOpaque()
    pthread_create(&thread, nil, { argument in
      let me = Unmanaged<BenchThread>.fromOpaque(argument!).takeRetainedValue()
      me.body()
      return nil
    }, box)
    pthread_detach(thread)
  }
}

/// `task-wall N`: N tasks parked in a continuation, a 5 s wall profile of
/// every thread and every task (`includesSuspendedTasks`, 100 Hz): the mean
/// cost of one task pass (at every drain, 10 ms).
func benchTaskWall(tasks: Int) async throws {
  Profiler.shared.prepareTaskDump()
  let parked = Parked()
  for index in 0..<tasks { Task.detached { await parkedBenchRequest(parked, index) } }
  while parked.count < tasks { try await Task.sleep(for: .milliseconds(10)) }
  _ = try Profiler.shared.taskDumpSynchronously()  // calibrated
  let before = Profiler.shared.taskWallPassCost()
  var options = SessionOptions()
  options.includesSuspendedTasks = true
  // The cost 2 s in, once the first round of full reads (every task's
  // chain, 64 per pass) is over: the steady state.
  let atTwoSeconds = Mutex<(passes: UInt64, meanNanoseconds: Double)?>(nil)
  let reader = ProfilerThread(name: "bench-reader") {
    // Whole: the profile's signals interrupt a plain sleep.
    var pause = timespec(tv_sec: 2, tv_nsec: 0)
    var left = timespec()
    while nanosleep(&pause, &left) == -1 { pause = left }
    atTwoSeconds.withLock { $0 = Profiler.shared.taskWallPassCost() }
  }
  let profile = try Profiler.shared.recordSynchronously(mode: .wall, duration: .seconds(5), options: options)
  let after = Profiler.shared.taskWallPassCost()
  reader.join()
  func mean(_ from: (passes: UInt64, meanNanoseconds: Double), _ to: (passes: UInt64, meanNanoseconds: Double)) -> (UInt64, Double) {
    let passes = to.passes - from.passes
    let total = to.meanNanoseconds * Double(to.passes) - from.meanNanoseconds * Double(from.passes)
    return (passes, passes == 0 ? 0 : total / Double(passes))
  }
  let (passes, overall) = mean(before, after)
  let (_, steady) = atTwoSeconds.withLock { $0 }.map { mean($0, after) } ?? (0, 0)
  let suspended = profile.threads.first { $0.name.hasPrefix("tasks (") }?.samples.reduce(Int64(0)) { $0 + $1.values[0] } ?? 0
  parked.resumeAll()
  print(
    "task-wall parked=\(tasks) passes=\(passes) pass_mean_us=\(String(format: "%.1f", overall / 1000))"
      + " steady_mean_us=\(String(format: "%.1f", steady / 1000)) suspended_samples=\(suspended)")
}
