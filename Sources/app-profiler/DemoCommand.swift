import AppProfiler
import ArgumentParser
import Foundation

/// `app-profiler demo`: profiles a built-in workload and writes the results.
struct DemoCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "demo",
    abstract: "Profile a built-in sample workload and write speedscope files.",
    discussion: """
      Starts a workload with a CPU-heavy thread, a thread that blocks, and a
      thread that does both; records a cpu and a wall profile of the whole
      process; writes them to the output directory and prints the hottest
      functions.

      Example:
        swift run -c release app-profiler demo --duration 2 --output ./app-profiler-demo
      """
  )

  @Option(help: "Seconds each profile records.")
  var duration: Double = 2

  @Option(help: "Directory for the profiles (created if missing).")
  var output: String = "app-profiler-demo"

  mutating func run() async throws {
    guard duration > 0, duration <= 60 else {
      throw ValidationError("--duration must be more than 0 and at most 60 seconds")
    }
    try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true)
    let workload = DemoWorkload()
    workload.start()
    defer { workload.stop() }
    print("Profiling a sample workload (pid \(getpid())) for \(duration) s per mode…")
    var written: [String] = []
    for mode in [Profile.Mode.cpu, .wall] {
      let profile = try await Profiler.shared.record(mode: mode, duration: .milliseconds(Int(duration * 1000)))
      let path = (output as NSString).appendingPathComponent("demo-\(mode.rawValue).speedscope.json")
      try Data(SpeedscopeEncoder(name: "app-profiler demo: \(mode.rawValue)").encode(profile)).write(
        to: URL(fileURLWithPath: path))
      written.append(path)
      print("\n\(mode.rawValue) profile — \(profile.totalCount) samples, engine \(profile.engine)")
      print(TopFunctions(profile, idle: .exclude).render(limit: 8))
    }
    print("\nWrote:")
    for path in written { print("  \(path)") }
    print("Open them at https://www.speedscope.app (drag the file onto the page).")
  }
}
