@_spi(Benchmarks) import AppProfiler

#if canImport(Glibc)
import Glibc
#endif

/// Time from `stop()` to the finished, symbolized profile: cold (caches
/// dropped) and warm (the same process, second profile).
func benchSymbolize(seconds: Double) async throws {
  let flag = Flag()
  let workers = (0..<2).map { _ in Worker { burn(flag) } }
  workers.forEach { _ = $0.waitForTID() }
  for label in ["cold", "warm", "warm"] {
    if label == "cold" { Profiler.shared.resetSymbolCaches() }
    let session = try Profiler.shared.start(mode: .wall)
    try await Task.sleep(for: .milliseconds(Int(seconds * 1000)))
    let started = now()
    let profile = try await session.stop()
    let elapsed = Double(now() - started) / 1e6
    print(
      "symbolize \(label) stop_to_profile=\(format(elapsed, 2))ms locations=\(profile.locations.count) functions=\(profile.functions.count) mappings=\(profile.mappings.count)"
    )
  }
  flag.set()
  workers.forEach { $0.join() }
}
