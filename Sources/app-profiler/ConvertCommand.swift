import AppProfiler
import ArgumentParser
import Foundation

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
      guard let target = format.flatMap(ProfileFormat.init(name:)) ?? ProfileFormat(fileName: output) else {
        throw CLIError.usage("cannot tell the output format from \(output); pass --format speedscope|pprof|collapsed|html")
      }
      let profile = try ProfileFiles.read(input)
      try ProfileFiles.write(target.encode(profile), to: output)
      print("wrote \(output) (\(target.name), \(profile.totalCount) samples)")
    }
  }
}
