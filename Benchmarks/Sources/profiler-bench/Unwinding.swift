@_spi(Benchmarks) import AppProfiler
import AppProfilerServer

#if canImport(Glibc)
import Glibc
#endif

/// Recurses `depth` Swift frames, then runs `body` (a deep, realistic stack).
@inline(never)
func nest(_ depth: Int, _ body: () -> Void) {
  if depth == 0 { body() } else { nest(depth - 1, body) }
  sink.wrappingAdd(1, ordering: .relaxed)
}

/// Unwind cost per sample and per frame, frame pointers vs CFI, on this
/// thread's own stack (same code the signal handler runs).
func benchUnwindCost() {
  nest(30) {
    for cfi in [false, true] {
      _ = Profiler.shared.benchmarkUnwind(iterations: 1000, callFrameInformation: cfi)  // warm up
      let (nanoseconds, depth) = Profiler.shared.benchmarkUnwind(iterations: 200_000, callFrameInformation: cfi)
      print(
        "unwind-cost unwinder=\(cfi ? "cfi" : "frame-pointers") depth=\(depth) per_sample=\(format(nanoseconds, 0))ns per_frame=\(format(nanoseconds / Double(max(depth, 1)), 1))ns"
      )
    }
  }
}

/// Table build time and memory for every image of a process that runs a
/// NIO server (the profile server), cold and again (cached).
func benchTables() async throws {
  let server = try await ProfileServer.start(environment: ["APP_PROFILER_DIR": "/tmp/app-profiler-bench-\(getpid())"])
  defer { Task { await server.stop() } }
  let rssBefore = residentKilobytes()
  Profiler.shared.resetUnwindTables()
  let cold = Profiler.shared.unwindTableStatistics()
  let rssAfter = residentKilobytes()
  let warm = Profiler.shared.unwindTableStatistics()
  print(
    "tables images=\(cold.images) rows=\(cold.rows) bytes=\(format(Double(cold.bytes) / 1_048_576, 2))MiB build=\(format(cold.milliseconds, 1))ms rss_delta=\(format(Double(rssAfter - rssBefore) / 1024, 1))MiB reuse=\(format(warm.milliseconds, 2))ms rebuilt=\(warm.built)"
  )
  await server.stop()
  try? FileManagerShim.removeDirectory("/tmp/app-profiler-bench-\(getpid())")
}

/// Share of wall samples of blocked threads whose stack reaches the thread's
/// root (clone3/start_thread), frame pointers vs CFI.
func benchCompleteness() async throws {
  let flag = Flag()
  var mutex = pthread_mutex_t()
  var condition = pthread_cond_t()
  pthread_mutex_init(&mutex, nil)
  pthread_cond_init(&condition, nil)
  nonisolated(unsafe) let mutexPointer = withUnsafeMutablePointer(to: &mutex) { $0 }
  nonisolated(unsafe) let conditionPointer = withUnsafeMutablePointer(to: &condition) { $0 }
  let waiters = (0..<4).map { _ in
    Worker {
      nest(10) {
        pthread_mutex_lock(mutexPointer)
        while !flag.isSet { pthread_cond_wait(conditionPointer, mutexPointer) }
        pthread_mutex_unlock(mutexPointer)
      }
    }
  }
  let sleepers = (0..<2).map { _ in Worker { nest(10) { while !flag.isSet { usleep(100_000) } } } }
  let tids = Set((waiters + sleepers).map { $0.waitForTID() })
  usleep(100_000)
  for unwinder in [SessionOptions.Unwinder.framePointers, .callFrameInformation] {
    var options = SessionOptions()
    options.unwinder = unwinder
    let profile = try await Profiler.shared.record(mode: .wall, duration: .seconds(1), options: options)
    var total: Int64 = 0
    var rooted: Int64 = 0
    for thread in profile.threads where tids.contains(thread.id) {
      for sample in thread.samples {
        total += profile.count(sample)
        let root = profile.functionsOfStack(sample.stack).first.map { profile.functions[$0].name } ?? ""
        if root.contains("clone3") || root.contains("start_thread") { rooted += profile.count(sample) }
      }
    }
    print("completeness unwinder=\(unwinder == .framePointers ? "frame-pointers" : "cfi") rooted=\(rooted)/\(total) = \(format(100 * Double(rooted) / Double(max(total, 1))))%")
  }
  flag.set()
  pthread_mutex_lock(&mutex)
  pthread_cond_broadcast(&condition)
  pthread_mutex_unlock(&mutex)
  (waiters + sleepers).forEach { $0.join() }
}

func residentKilobytes() -> Int {
  let fd = open("/proc/self/status", O_RDONLY)
  guard fd >= 0 else { return 0 }
  defer { close(fd) }
  var buffer = [UInt8](repeating: 0, count: 8192)
  let count = read(fd, &buffer, buffer.count)
  let text = String(decoding: buffer[0..<max(count, 0)], as: UTF8.self)
  for line in text.split(separator: "\n") where line.hasPrefix("VmRSS:") {
    return Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0
  }
  return 0
}

enum FileManagerShim {
  static func removeDirectory(_ path: String) throws {
    rmdir(path)
  }
}
