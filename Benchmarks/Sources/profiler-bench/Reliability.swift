import AppProfiler
import Foundation

/// 1,000 consecutive 50 ms profiles (cpu and wall alternating) against the
/// profile server of a process under HTTP load with thread churn; fds,
/// threads and RSS sampled every 100 profiles.
func benchSoak(profiles: Int) async throws {
  let directory = NSTemporaryDirectory() + "app-profiler-soak-\(getpid())"
  mkdir(directory, 0o700)
  defer { try? FileManager.default.removeItem(atPath: directory) }
  let app = try await AppService.start(directory: directory)
  let stop = Flag()
  startHTTPLoad(port: app.port, threads: 2, stop: stop)
  // Thread churn: threads created and joined continuously.
  let churn = Worker {
    while !stop.isSet {
      let child = Worker { sink.wrappingAdd(1, ordering: .relaxed) }
      child.join()
    }
  }
  try await Task.sleep(for: .milliseconds(500))
  var failures = 0
  var samples: [(Int, Int, Int, Int)] = []
  func snapshot(_ index: Int) {
    let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? -1
    let threads = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task").count) ?? -1
    samples.append((index, fds, threads, residentKilobytes()))
  }
  let started = now()
  for index in 0..<profiles {
    if index % 100 == 0 { snapshot(index) }
    let mode = index % 2 == 0 ? "cpu" : "wall"
    let status = await Task.detached { httpGet(unixSocket: app.socketPath, "/profile?mode=\(mode)&duration=0.05&format=pprof") }.value
    if status != 200 { failures += 1 }
  }
  snapshot(profiles)
  let seconds = Double(now() - started) / 1e9
  stop.set()
  churn.join()
  await app.profiler.stop()
  for (index, fds, threads, rss) in samples {
    print("soak after=\(index) fds=\(fds) threads=\(threads) rss=\(rss)kB")
  }
  let rssValues = samples.dropFirst().map(\.3)
  let spread = Double((rssValues.max() ?? 0) - (rssValues.min() ?? 0)) / Double(max(rssValues.min() ?? 1, 1))
  print("soak profiles=\(profiles) failures=\(failures) seconds=\(format(seconds, 1)) rss_spread_after_first_100=\(format(100 * spread, 1))%")
}

/// Serves the app until stdin closes, for run.sh's overhead-http (wrk).
func benchHTTPServer() async throws {
  try await serveUntilStdinCloses(name: "http", handlers: 4) { "READY \($0.port) \($0.socketPath)" }
}

/// Starts the app and its profile server in a fresh directory, prints the
/// READY line run.sh waits for, and stops when run.sh closes stdin.
func serveUntilStdinCloses(name: String, handlers: Int, ready: (AppService) -> String) async throws {
  let directory = NSTemporaryDirectory() + "app-profiler-\(name)-\(getpid())"
  mkdir(directory, 0o700)
  let app = try await AppService.start(directory: directory, handlers: handlers)
  print(ready(app))
  fflush(nil)
  while readLine() != nil {}
  await app.profiler.stop()
  try? FileManager.default.removeItem(atPath: directory)
}

/// A process with the profile server started and nothing else, for the idle
/// benchmark; run.sh compares it with idle-baseline (library not linked).
func benchIdleServer() async throws {
  try await serveUntilStdinCloses(name: "idle", handlers: 0) { "READY \(getpid()) \($0.socketPath)" }
}
