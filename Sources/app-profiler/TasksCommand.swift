import ArgumentParser
import Foundation

struct TasksCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "tasks",
    abstract: "Print every Swift task of a running process with its await chain, suspended ones included.",
    discussion: """
      Tasks with the same chain are grouped, most common first; --each lists
      every task (id, parent, state, what it waits on and for how long,
      labels). Suspension times count from the process's first task dump.
      A hang: tasks waiting on a continuation for long (docs/tasks.md).

      Example:
        app-profiler tasks 4242
        app-profiler tasks 4242 --suspended-for 30s --each
      """)

  @Argument(help: "pid, socket path or http://host:port of the process.")
  var target: String

  @Option(help: "Only tasks waiting at least this long at the same await (30, 30s, 2m).")
  var suspendedFor: String?

  @Flag(help: "One entry per task instead of groups.")
  var each = false

  @Option(help: "Directory of the discovery records, for a pid target.")
  var dir: String?

  @Option(help: "Bearer token (default: $APP_PROFILER_TOKEN).")
  var token: String?

  func run() async throws {
    try await reportingErrors {
      let endpoint = try TargetResolver.resolve(target, directory: dir, token: token)
      var path = "/debug/pprof/tasks?debug=\(each ? 2 : 1)"
      if let suspendedFor {
        let allowed = CharacterSet(charactersIn: "0123456789.smh")
        guard !suspendedFor.isEmpty, suspendedFor.unicodeScalars.allSatisfy(allowed.contains) else {
          throw CLIError.usage("--suspended-for '\(suspendedFor)': a duration such as 30, 30s, 2m or 1h")
        }
        path += "&suspended_for=\(suspendedFor)"
      }
      let answer = try HTTPConnection(endpoint).get(path)
      try TargetResolver.check(answer)
      print(answer.text)
    }
  }
}
