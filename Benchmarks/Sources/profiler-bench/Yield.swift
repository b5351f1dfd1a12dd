import AppProfiler

#if canImport(Glibc)
import Glibc
#endif

/// Samples received ÷ samples expected from the CPU time the busy threads
/// really used (their CPU clocks), per rate and thread count.
func benchYield(threads: Int, hertz: Int, seconds: Double, options: SessionOptions = SessionOptions()) async throws {
  let flag = Flag()
  let workers = (0..<threads).map { _ in Worker { burn(flag) } }
  let tids = workers.map { $0.waitForTID() }
  usleep(100_000)
  let interval = Duration.nanoseconds(1_000_000_000 / hertz)
  // The CPU clocks are read when sampling is armed and right before it
  // stops: table building before and symbolization after take time in
  // which the workers keep running unsampled.
  let session = try Profiler.shared.start(mode: .cpu, interval: interval, options: options)
  let before = tids.map(cpuTime(ofThread:))
  try await Task.sleep(for: .milliseconds(Int(seconds * 1000)))
  let after = tids.map(cpuTime(ofThread:))
  let profile = try await session.stop()
  flag.set()
  workers.forEach { $0.join() }
  let cpu = zip(after, before).reduce(0) { $0 + Double($1.0 - $1.1) }
  let expected = cpu / Double(interval.components.attoseconds / 1_000_000_000 + interval.components.seconds * 1_000_000_000)
  let got = tids.reduce(Int64(0)) { sum, tid in sum + (profile.threads.first { $0.id == tid }.map { profile.totalCount(of: $0) } ?? 0) }
  print(
    "yield threads=\(threads) hz=\(hertz) engine=\(profile.engine) got=\(got) expected=\(Int(expected)) yield=\(format(100 * Double(got) / expected))% dropped=\(profile.statistics.droppedSamples)"
  )
}
