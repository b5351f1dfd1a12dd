import ArgumentParser
import Foundation

struct ThreadsCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "threads",
    abstract: "Print every thread's current stack of a running process.",
    discussion: """
      Example:
        app-profiler threads 4242
        app-profiler threads /tmp/app_profiler/app-profiler-4242.sock --json
      """)

  @Argument(help: "pid, socket path or http://host:port of the process.")
  var target: String

  @Flag(help: "JSON instead of text.")
  var json = false

  @Option(help: "Directory of the discovery records, for a pid target.")
  var dir: String?

  @Option(help: "Bearer token (default: $APP_PROFILER_TOKEN).")
  var token: String?

  func run() async throws {
    try await reportingErrors {
      let endpoint = try TargetResolver.resolve(target, directory: dir, token: token)
      let answer = try HTTPConnection(endpoint).get(json ? "/threads?format=json" : "/threads")
      try TargetResolver.check(answer)
      print(answer.text)
    }
  }
}
