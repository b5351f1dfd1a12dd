import AppProfiler
import ArgumentParser
import Foundation

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
