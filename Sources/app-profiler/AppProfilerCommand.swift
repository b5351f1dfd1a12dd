import ArgumentParser

@main
struct AppProfilerCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "app-profiler",
    abstract: "Profile long-running Swift processes on Linux.",
    discussion: """
      Exit codes: 0 success, 1 unexpected failure, 2 target not profilable
      (no such process, no profile server, not an app-profiler socket,
      permission denied), 3 server busy, 4 parameter rejected by the server,
      64 bad command line, 130 interrupted.
      """,
    subcommands: [
      ListCommand.self, RecordCommand.self, TopCommand.self, DiffCommand.self, ConvertCommand.self, ViewCommand.self,
      ThreadsCommand.self, TasksCommand.self, DemoCommand.self, DemoWorkloadCommand.self,
    ]
  )
}
