import AppProfiler
import ArgumentParser
import Foundation

struct TopCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "top",
    abstract: "Show the hottest functions of a profile file or of a running process.",
    discussion: """
      With a file (any format app-profiler writes), reads it; with a pid,
      socket or URL, records a profile first (--mode, --duration).
      self% counts samples where the function is the leaf, total% samples
      where it is anywhere on the stack.

      Example:
        app-profiler top cpu.pb.gz --limit 15
        app-profiler top 4242 --mode wall --duration 5 --idle exclude
      """)

  @Argument(help: "A profile file, or pid / socket / URL to record from.")
  var source: String

  @Option(help: "Rows to show.")
  var limit: Int = 20

  @Option(help: "Only this thread id.")
  var thread: Int32?

  @Option(help: "Wall samples of blocked threads: exclude or include.")
  var idle: String = "exclude"

  @Option(help: "When recording: cpu, wall or alloc.")
  var mode: String = "cpu"

  @Option(help: "When recording: seconds.")
  var duration: Double = 5

  @Option(help: "Directory of the discovery records, for a pid target.")
  var dir: String?

  func validate() throws {
    guard limit > 0 else { throw ValidationError("--limit must be positive") }
    guard TopFunctions.IdleSamples(rawValue: idle) != nil else { throw ValidationError("--idle must be exclude or include") }
    guard duration > 0, duration.isFinite else { throw ValidationError("--duration must be more than 0 seconds (the server states its maximum)") }
    guard ["cpu", "wall", "alloc", "object"].contains(mode) else { throw ValidationError("--mode must be cpu, wall or alloc") }
  }

  func run() async throws {
    try await reportingErrors {
      let profile: Profile
      var isDirectory: ObjCBool = false
      if FileManager.default.fileExists(atPath: source, isDirectory: &isDirectory), !isDirectory.boolValue,
        !Self.isSocket(source)
      {
        profile = try ProfileFiles.read(source)
      } else {
        let endpoint = try TargetResolver.resolve(source, directory: dir, token: nil)
        let answer = try Recorder.fetch(
          endpoint, "/profile?mode=\(mode)&duration=\(duration)&format=pprof", expectedSeconds: duration,
          label: "recording \(mode) profile of \(source)")
        try TargetResolver.check(answer)
        profile = try ProfileFiles.decode(answer.body, name: source)
      }
      let top = TopFunctions(profile, thread: thread, idle: TopFunctions.IdleSamples(rawValue: idle)!)
      print("\(profile.mode.rawValue) profile, \(top.total) \(top.unit)\(thread.map { " of thread \($0)" } ?? "")")
      print(top.render(limit: limit))
    }
  }

  static func isSocket(_ path: String) -> Bool {
    var info = stat()
    return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFSOCK
  }
}

struct ConvertCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "convert",
    abstract: "Convert a profile between speedscope, pprof, collapsed stacks and HTML.",
    discussion: """
      The input format is recognised from its content; the output format from
      the output's file name or --format. Names, file:line (speedscope,
      pprof) and thread ids (speedscope, pprof) are kept where the output can
      carry them.

      Example:
        app-profiler convert cpu.speedscope.json -o cpu.pb.gz
        app-profiler convert cpu.pb.gz -o cpu.html
      """)

  @Argument(help: "Input profile file.")
  var input: String

  @Option(name: .shortAndLong, help: "Output file.")
  var output: String

  @Option(help: "speedscope, pprof, collapsed or html (default: from the output's name).")
  var format: String?

  func run() async throws {
    try await reportingErrors {
      guard let target = format.flatMap(OutputFormat.init(rawValue:)) ?? OutputFormat(fileName: output) else {
        throw CLIError.usage("cannot tell the output format from \(output); pass --format speedscope|pprof|collapsed|html")
      }
      let profile = try ProfileFiles.read(input)
      try ProfileFiles.write(target.encode(profile), to: output)
      print("wrote \(output) (\(target.rawValue), \(profile.totalCount) samples)")
    }
  }
}

struct ViewCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "view",
    abstract: "Serve the HTML flame graph of a profile file on 127.0.0.1.",
    discussion: """
      Prints the URL, then serves until Ctrl-C.

      Example:
        app-profiler view cpu.pb.gz --port 8080
      """)

  @Argument(help: "Profile file (any format app-profiler writes).")
  var file: String

  @Option(help: "Port on 127.0.0.1 (0 picks a free one).")
  var port: Int = 0

  func run() async throws {
    try await reportingErrors {
      let profile = try ProfileFiles.read(file)
      let page = HTMLFlameGraphEncoder(title: (file as NSString).lastPathComponent).encode(profile)
      let server = try PageServer(page: page, port: port)
      print("serving \(file) at http://127.0.0.1:\(server.port)/ (Ctrl-C to stop)")
      fflush(nil)
      server.serveForever()
    }
  }
}

/// Serves one page on 127.0.0.1 to every GET.
final class PageServer {
  private let fd: Int32
  private let page: [UInt8]
  let port: Int

  init(page: [UInt8], port: Int) throws(CLIError) {
    self.page = page
    (fd, self.port) = try LoopbackListener.open(port: port)
  }

  func serveForever() {
    while true {
      let client = accept(fd, nil, nil)
      if client < 0 { continue }
      var request = [UInt8](repeating: 0, count: 8192)
      _ = recv(client, &request, request.count, 0)
      let head = "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: \(page.count)\r\nConnection: close\r\nX-Content-Type-Options: nosniff\r\n\r\n"
      let response = Array(head.utf8) + page
      var sent = 0
      while sent < response.count {
        let count = response[sent...].withUnsafeBufferPointer { send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        if count <= 0 { break }
        sent += count
      }
      close(client)
    }
  }
}
