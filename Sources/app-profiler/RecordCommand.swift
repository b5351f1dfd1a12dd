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

      With --last, nothing is recorded: the server's flight recorder
      (APP_PROFILER_FLIGHT_RECORDER=N) answers at once with what it kept of
      the last seconds (cpu or wall).

      Example:
        app-profiler record 4242 --mode wall --duration 10 -o wall.html --open
        app-profiler record 4242 --mode alloc --duration 10 -o allocs.pb.gz
        app-profiler record 4242 --last 30s -o last30.html
      """)

  @Argument(help: "pid, socket path or http://host:port of the profiled process.")
  var target: String

  @Option(help: "cpu, wall, alloc (object is the same), heap, block or mutex.")
  var mode: String = "cpu"

  @Option(help: "Seconds to record (decimal).")
  var duration: Double = 10

  @Option(help: "cpu/wall: microseconds between samples (100 … 1000000, default 10000: 100 Hz). alloc: mean bytes between samples (1 … 1073741824, default: the server's, 524288).")
  var interval: Int?

  @Option(help: "speedscope, pprof, collapsed or html (default: from -o, else speedscope).")
  var format: String?

  @Option(name: .shortAndLong, help: "Output file (default: <pid>-<mode>-<time>.<ext>).")
  var output: String?

  @Option(help: "Directory of the discovery records, for a pid target.")
  var dir: String?

  @Option(help: "Bearer token (default: $APP_PROFILER_TOKEN).")
  var token: String?

  @Option(help: "The last seconds from the flight recorder instead of recording: 30, 30s, 2m (cpu or wall).")
  var last: String?

  @Flag(help: "Open the HTML flame graph when done (xdg-open).")
  var open = false

  /// `--last`: seconds, from `30`, `30s`, `2m`.
  static func seconds(_ text: String) -> Int? {
    if text.hasSuffix("m"), let minutes = Int(text.dropLast()), minutes > 0 { return minutes * 60 }
    if text.hasSuffix("s"), let seconds = Int(text.dropLast()), seconds > 0 { return seconds }
    if let seconds = Int(text), seconds > 0 { return seconds }
    return nil
  }

  func validate() throws {
    // The upper bound is the server's (its configured maximum, 300 s by
    // default): it answers 400 with the number.
    guard duration > 0, duration.isFinite else {
      throw ValidationError("--duration must be more than 0 seconds")
    }
    guard Profile.Mode(parameter: mode) != nil else {
      throw ValidationError("--mode must be one of \(Profile.Mode.parameterValues)")
    }
    if let format, ProfileFormat(name: format) == nil {
      throw ValidationError("--format must be speedscope, pprof, collapsed or html")
    }
    if let last {
      guard Self.seconds(last) != nil else { throw ValidationError("--last must be seconds: 30, 30s or 2m") }
      guard mode == "cpu" || mode == "wall" else { throw ValidationError("--last records cpu or wall (the flight recorder's)") }
    }
  }

  func run() async throws {
    try await reportingErrors {
      let endpoint = try TargetResolver.resolve(target, directory: dir, token: token)
      let chosen = format.flatMap(ProfileFormat.init(name:)) ?? output.flatMap(ProfileFormat.init(fileName:)) ?? .speedscope
      let stamp = Self.timestamp()
      let path = output ?? "\(target.allSatisfy(\.isNumber) ? target : "profile")-\(mode)-\(stamp).\(chosen.fileExtension)"
      var body: [UInt8]
      if let seconds = last.flatMap(Self.seconds) {
        // The flight recorder answers in pprof; other formats are made here.
        let answer = try Recorder.fetch(
          endpoint, "/debug/pprof/flight?seconds=\(seconds)&mode=\(mode)", expectedSeconds: 0,
          label: "reading the last \(seconds) s (\(mode)) of \(target)'s flight recorder")
        try TargetResolver.check(answer)
        body = answer.body
        if chosen != .pprof {
          let profile = try ProfileFiles.decode(answer.body, name: "flight.pb.gz")
          body = chosen.encode(profile, title: "\(mode) profile of \(target): the last \(seconds) s")
        }
      } else {
        let query = "/profile?mode=\(mode)&duration=\(duration)\(interval.map { "&interval=\($0)" } ?? "")&format=\(chosen.name)"
        let answer = try Recorder.fetch(endpoint, query, expectedSeconds: duration, label: "recording \(mode) profile of \(target)")
        try TargetResolver.check(answer)
        body = answer.body
      }
      try ProfileFiles.write(body, to: path)
      print("wrote \(path) (\(chosen.name), \(body.count) bytes)")
      if open {
        var htmlPath = path
        if chosen != .html {
          htmlPath = path + ".html"
          let profile = try ProfileFiles.decode(body, name: path)
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
