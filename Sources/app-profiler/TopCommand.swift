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
        app-profiler top cpu.pb.gz --tag route=/users/:id
        app-profiler top cpu.pb.gz --names short
        app-profiler top heap.pb.gz --inuse
        app-profiler top 4242 --mode heap --duration 10 --sample-index alloc_space
        app-profiler top 4242 --mode block --duration 10 --sample-index delay
      """)

  @Argument(help: "A profile file, or pid / socket / URL to record from.")
  var source: String

  @Option(help: "Rows to show.")
  var limit: Int = 20

  @Option(help: "Only this thread id.")
  var thread: Int32?

  @Option(help: "Wall samples of blocked threads: exclude or include.")
  var idle: String = "exclude"

  @Option(help: "When recording: cpu, wall, alloc, heap, block or mutex.")
  var mode: String = "cpu"

  @Flag(help: "Heap profiles: count what is still in use (inuse_space), the default of a heap profile.")
  var inuse = false

  @Option(
    name: .customLong("sample-index"),
    help: "The sample type to count (e.g. inuse_space, alloc_objects, delay, contentions); default: the profile's.")
  var sampleIndex: String?

  @Option(help: "When recording: seconds.")
  var duration: Double = 5

  @Option(help: "Directory of the discovery records, for a pid target.")
  var dir: String?

  @Option(help: "Only samples with this label (key=value; repeat for several).")
  var tag: [String] = []

  @Option(help: "Function names: full (Module.Type.f(x: Swift.Int) -> Swift.Int) or short (Type.f(x:)).")
  var names: String = "full"

  /// `--tag` values as a label filter.
  var labelFilter: [String: String] {
    var filter: [String: String] = [:]
    for pair in tag {
      let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
      if parts.count == 2 { filter[String(parts[0])] = String(parts[1]) }
    }
    return filter
  }

  func validate() throws {
    guard limit > 0 else { throw ValidationError("--limit must be positive") }
    guard TopFunctions.IdleSamples(rawValue: idle) != nil else { throw ValidationError("--idle must be exclude or include") }
    guard TopFunctions.Names(rawValue: names) != nil else { throw ValidationError("--names must be full or short") }
    guard duration > 0, duration.isFinite else { throw ValidationError("--duration must be more than 0 seconds (the server states its maximum)") }
    guard Profile.Mode(parameter: mode) != nil else { throw ValidationError("--mode must be one of \(Profile.Mode.parameterValues)") }
    if inuse && sampleIndex != nil && sampleIndex != "inuse_space" {
      throw ValidationError("--inuse and --sample-index \(sampleIndex!) ask for different sample types")
    }
    for pair in tag where pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).count != 2
      || pair.hasPrefix("=")
    {
      throw ValidationError("--tag must be key=value, e.g. --tag route=/users/:id (got '\(pair)')")
    }
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
      let view = profile.filtered(labels: labelFilter)
      let sampleType = inuse ? "inuse_space" : sampleIndex
      if let sampleType, profile.sampleTypeIndex(sampleType) == nil {
        throw CLIError.failure(
          "\(source) has no sample type '\(sampleType)' (it has \(profile.sampleTypes.map(\.type).joined(separator: ", ")))"
            + (inuse ? ": in-use figures come from heap profiles (/debug/pprof/heap, --mode heap)" : ""))
      }
      let top = TopFunctions(view, thread: thread, idle: TopFunctions.IdleSamples(rawValue: idle)!, sampleType: sampleType)
      let labels = tag.isEmpty ? "" : " with \(tag.joined(separator: ", "))"
      let what = sampleType.map { " (\($0))" } ?? ""
      print("\(profile.mode.rawValue) profile\(what), \(top.total) \(top.unit)\(thread.map { " of thread \($0)" } ?? "")\(labels)")
      print(top.render(limit: limit, names: TopFunctions.Names(rawValue: names)!))
    }
  }

  static func isSocket(_ path: String) -> Bool {
    var info = stat()
    return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFSOCK
  }
}
