import AppProfiler
import AppProfilerServer
import ArgumentParser
import Foundation

/// `app-profiler demo`: the whole product in one command.
struct DemoCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "demo",
    abstract: "Profile a sample service end to end and write the results.",
    discussion: """
      Starts a sample workload process (an HTTP service with a CPU-heavy, a
      blocking and an allocating route, driven by its own load generator)
      with the profile server on; discovers it; records a cpu and a wall
      profile over the server's Unix socket; writes speedscope, pprof and
      HTML files into the output directory; prints the hottest functions;
      and shuts the workload down.

      Example:
        swift run -c release app-profiler demo --duration 2 --output ./app-profiler-demo
      """)

  @Option(help: "Seconds each profile records.")
  var duration: Double = 2

  @Option(help: "Directory for the results (created if missing).")
  var output: String = "app-profiler-demo"

  func validate() throws {
    guard duration > 0, duration <= 60 else { throw ValidationError("--duration must be more than 0 and at most 60 seconds") }
  }

  func run() async throws {
    try await reportingErrors {
      try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true)
      // A private discovery directory, removed at the end.
      var template = Array("/tmp/app-profiler-demo-XXXXXX".utf8CString)
      guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
        throw CLIError.failure("cannot create a temporary directory")
      }
      let directory = String(cString: made)
      defer { try? FileManager.default.removeItem(atPath: directory) }

      let workload = Process()
      workload.executableURL = URL(fileURLWithPath: "/proc/self/exe")
      workload.arguments = ["demo-workload"]
      var environment = ProcessInfo.processInfo.environment
      environment["APP_PROFILER_DIR"] = directory
      environment["APP_PROFILER_TRANSPORT"] = "unix"
      workload.environment = environment
      let input = Pipe()
      let outputPipe = Pipe()
      workload.standardInput = input
      workload.standardOutput = outputPipe
      try workload.run()
      defer {
        try? input.fileHandleForWriting.close()
        workload.waitUntilExit()
      }
      let ready = String(decoding: outputPipe.fileHandleForReading.availableData, as: UTF8.self)
      guard ready.hasPrefix("READY ") else { throw CLIError.failure("the workload did not start: \(ready)") }
      print("started the sample workload (pid \(workload.processIdentifier)): an HTTP service under load, with the profile server on")

      // Discover it the way `app-profiler list` does.
      guard let record = DiscoveryRecord.all(in: directory).compactMap(\.record).first(where: { $0.pid == workload.processIdentifier })
      else { throw CLIError.failure("the workload wrote no discovery record in \(directory)") }
      print("discovered it: \(record.transport) \(record.address)\n")
      let endpoint = try TargetResolver.resolve(String(record.pid), directory: directory, token: nil)

      var written: [String] = []
      for mode in ["cpu", "wall", "alloc"] {
        let answer = try Recorder.fetch(
          endpoint, "/profile?mode=\(mode)&duration=\(duration)&format=pprof", expectedSeconds: duration,
          label: "recording \(mode) profile")
        try TargetResolver.check(answer)
        let profile = try ProfileFiles.decode(answer.body, name: "\(mode) profile")
        for format in [ProfileFormat.pprof, .speedscope, .html] {
          let path = (output as NSString).appendingPathComponent("\(mode).\(format.fileExtension)")
          try ProfileFiles.write(format == .pprof ? answer.body : format.encode(profile), to: path)
          written.append(path)
        }
        let top = TopFunctions(profile, idle: .exclude)
        if mode == "alloc" {
          let sampled = profile.threads.reduce(Int64(0)) { total, thread in
            total + thread.samples.reduce(Int64(0)) { $0 + profile.value($1, "samples") }
          }
          print("alloc profile: \(TopFunctions.bytes(top.total)) allocated (estimated from \(sampled) samples, one per \(profile.period / 1024) KiB)")
        } else {
          print("\(mode) profile: \(profile.totalCount) samples over \(profile.threads.count) threads (engine \(profile.engine))")
        }
        print(top.render(limit: 8))
        print("")
      }
      print("wrote:")
      for path in written { print("  \(path)") }
      print(
        """

        open the .html files in a browser, drag a .speedscope.json onto https://www.speedscope.app,
        or run: go tool pprof -top \((output as NSString).appendingPathComponent("cpu.pb.gz"))
        """)
    }
  }
}
