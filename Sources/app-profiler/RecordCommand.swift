import AppProfiler
import ArgumentParser
import Foundation
import Synchronization

struct RecordCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "record",
    abstract: "Record a profile of a running process and write it to a file.",
    discussion: """
      TARGET is a pid (found through its discovery record), a socket path, or
      a URL (http://127.0.0.1:PORT). The format follows the file name
      (.json speedscope, .pb.gz pprof, .txt collapsed, .html flame graph)
      unless --format says otherwise. Ctrl-C stops the server's session.

      Example:
        app-profiler record 4242 --mode wall --duration 10 -o wall.html --open
        app-profiler record 4242 --mode alloc --duration 10 -o allocs.pb.gz
      """)

  @Argument(help: "pid, socket path or http://host:port of the profiled process.")
  var target: String

  @Option(help: "cpu, wall or alloc (object is the same as alloc).")
  var mode: String = "cpu"

  @Option(help: "Seconds to record (decimal).")
  var duration: Double = 10

  @Option(help: "cpu/wall: microseconds between samples (100 … 1000000, default 1000). alloc: mean bytes between samples (1 … 1073741824, default: the server's, 524288).")
  var interval: Int?

  @Option(help: "speedscope, pprof, collapsed or html (default: from -o, else speedscope).")
  var format: String?

  @Option(name: .shortAndLong, help: "Output file (default: <pid>-<mode>-<time>.<ext>).")
  var output: String?

  @Option(help: "Directory of the discovery records, for a pid target.")
  var dir: String?

  @Option(help: "Bearer token (default: $APP_PROFILER_TOKEN).")
  var token: String?

  @Flag(help: "Open the HTML flame graph when done (xdg-open).")
  var open = false

  func validate() throws {
    // The upper bound is the server's (its configured maximum, 300 s by
    // default): it answers 400 with the number.
    guard duration > 0, duration.isFinite else {
      throw ValidationError("--duration must be more than 0 seconds")
    }
    guard Profile.Mode(parameter: mode) != nil else {
      throw ValidationError("--mode must be cpu, wall or alloc")
    }
    if let format, ProfileFormat(name: format) == nil {
      throw ValidationError("--format must be speedscope, pprof, collapsed or html")
    }
  }

  func run() async throws {
    try await reportingErrors {
      let endpoint = try TargetResolver.resolve(target, directory: dir, token: token)
      let chosen = format.flatMap(ProfileFormat.init(name:)) ?? output.flatMap(ProfileFormat.init(fileName:)) ?? .speedscope
      let stamp = Self.timestamp()
      let path = output ?? "\(target.allSatisfy(\.isNumber) ? target : "profile")-\(mode)-\(stamp).\(chosen.fileExtension)"
      let query = "/profile?mode=\(mode)&duration=\(duration)\(interval.map { "&interval=\($0)" } ?? "")&format=\(chosen.name)"
      let answer = try Recorder.fetch(endpoint, query, expectedSeconds: duration, label: "recording \(mode) profile of \(target)")
      try TargetResolver.check(answer)
      try ProfileFiles.write(answer.body, to: path)
      print("wrote \(path) (\(chosen.name), \(answer.body.count) bytes)")
      if open {
        var htmlPath = path
        if chosen != .html {
          htmlPath = path + ".html"
          let profile = try ProfileFiles.decode(answer.body, name: path)
          try ProfileFiles.write(HTMLFlameGraphEncoder().encode(profile), to: htmlPath)
        }
        Opener.open(htmlPath)
      }
    }
  }

  static func timestamp() -> String {
    let formatter = DateFormatter()
    formatter.dateFormat = "yyyyMMdd-HHmmss"
    formatter.timeZone = TimeZone(identifier: "UTC")
    return formatter.string(from: Date())
  }
}
