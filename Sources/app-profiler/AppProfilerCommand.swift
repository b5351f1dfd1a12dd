import ArgumentParser

@main
struct AppProfilerCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "app-profiler",
    abstract: "Profile long-running Swift processes on Linux.",
    subcommands: [DemoCommand.self]
  )
}
