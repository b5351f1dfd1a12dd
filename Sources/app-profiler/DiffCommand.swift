import AppProfiler
import ArgumentParser
import Foundation

struct DiffCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "diff",
    abstract: "Show what changed between two profiles: what grew between two heap profiles, where time went.",
    discussion: """
      Subtracts BASE from NEW per function (as go tool pprof -diff_base does)
      and lists the functions whose value grew most first, then those that
      shrank. Heap profiles compare what is in use (inuse_space) unless
      --sample-index says otherwise; a leak shows as the allocation site
      (the function that called the allocator) with the most growth. Any
      two profiles of the same kind work: cpu and wall compare samples.

      With -o, also writes the difference, in the format the file name says:
      .pb.gz the whole difference as pprof (go tool pprof reads it; negative
      values are what shrank); .html, .json (speedscope) or .txt (collapsed)
      a flame graph of what grew, per call path.

      Example:
        curl --unix-socket $SOCK -o base.pb.gz localhost/debug/pprof/heap
        sleep 60
        curl --unix-socket $SOCK -o new.pb.gz localhost/debug/pprof/heap
        app-profiler diff base.pb.gz new.pb.gz
        app-profiler diff before.pb.gz after.pb.gz --sample-index alloc_space -o growth.pb.gz
        app-profiler diff base.pb.gz new.pb.gz -o growth.html
      """)

  @Argument(help: "The earlier profile (any format app-profiler writes).")
  var base: String

  @Argument(help: "The later profile.")
  var new: String

  @Option(help: "Rows to show.")
  var limit: Int = 20

  @Option(
    name: .customLong("sample-index"),
    help: "The sample type to compare (e.g. inuse_space, inuse_objects, alloc_space); default: the profiles'.")
  var sampleIndex: String?

  @Option(help: "Function names: full or short.")
  var names: String = "full"

  @Option(
    name: .shortAndLong,
    help: "Also write the difference to this file: .pb.gz pprof (all of it), .html/.json/.txt a flame graph of what grew.")
  var output: String?

  func validate() throws {
    guard limit > 0 else { throw ValidationError("--limit must be positive") }
    guard TopFunctions.Names(rawValue: names) != nil else { throw ValidationError("--names must be full or short") }
    if let output, ProfileFormat(fileName: output) == nil {
      throw ValidationError("-o \(output): the name must end in .pb.gz, .html, .json or .txt (it picks the format)")
    }
  }

  func run() async throws {
    try await reportingErrors {
      let before = try ProfileFiles.read(base)
      let after = try ProfileFiles.read(new)
      guard let difference = after.difference(from: before) else {
        throw CLIError.failure(
          "\(base) and \(new) measure different things (\(before.sampleTypes.map(\.type).joined(separator: ", ")) vs "
            + "\(after.sampleTypes.map(\.type).joined(separator: ", "))): compare two profiles of the same mode")
      }
      if let sampleIndex, difference.sampleTypeIndex(sampleIndex) == nil {
        throw CLIError.failure(
          "the profiles have no sample type '\(sampleIndex)' (they have \(difference.sampleTypes.map(\.type).joined(separator: ", ")))")
      }
      let top = TopFunctions(difference, sampleType: sampleIndex)
      // Cumulative profiles share their start: compare where they end.
      let seconds =
        Double(Int64(after.startTimeNanoseconds + after.durationNanoseconds) - Int64(before.startTimeNanoseconds + before.durationNanoseconds)) / 1e9
      let type = sampleIndex ?? difference.sampleTypes[difference.defaultSampleType].type
      print(
        "\(after.mode.rawValue) profile difference (\(type)), \(new) − \(base) (taken \(String(format: "%.1f", seconds)) s apart): "
          + "\(top.total > 0 ? "+" : "")\(top.unit == "bytes" ? TopFunctions.bytes(top.total) : "\(top.total) \(top.unit)")")
      print(top.renderDifference(limit: limit, names: TopFunctions.Names(rawValue: names)!))
      if let output, let format = ProfileFormat(fileName: output) {
        // pprof carries negative values; flame graphs draw what grew.
        let written = format == .pprof ? difference : difference.growth(sampleType: sampleIndex)
        try ProfileFiles.write(format.encode(written, title: "what grew: \(new) − \(base)"), to: output)
        FileHandle.standardError.write(Data("wrote \(output)\n".utf8))
      }
    }
  }
}
