import AppProfilerServer
import ArgumentParser
import Foundation

struct ListCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "list",
    abstract: "List the processes on this machine that have a profile server.",
    discussion: """
      Reads the discovery records in the directory servers write to; records
      of processes that are gone are reported and removed.

      Example:
        app-profiler list
        app-profiler list --json --dir /run/myapp/profiler
      """)

  @Option(help: "Directory of the discovery records (default: $APP_PROFILER_DIR, $TMPDIR/app_profiler or /tmp/app_profiler).")
  var dir: String?

  @Flag(help: "Print the records as a JSON array.")
  var json = false

  func run() async throws {
    try await reportingErrors {
      let directory = dir ?? TargetResolver.defaultDirectory()
      for path in DiscoveryRecord.removeStale(in: directory) {
        FileHandle.standardError.write(Data("app-profiler: removed stale record \(path)\n".utf8))
      }
      let alive = DiscoveryRecord.all(in: directory).compactMap(\.record).filter(\.isAlive)
      if json {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        print(String(decoding: try encoder.encode(alive), as: UTF8.self))
        return
      }
      if alive.isEmpty {
        print("no profilable processes in \(directory)")
        return
      }
      let rows = alive.map { record -> [String] in
        [String(record.pid), (record.executable as NSString).lastPathComponent, record.transport + " " + record.address,
         Self.uptime(since: record.startTime), record.version]
      }
      print(Table.render(header: ["PID", "EXECUTABLE", "ADDRESS", "UPTIME", "VERSION"], rows: rows))
    }
  }

  static func uptime(since start: String) -> String {
    guard let date = ISO8601DateFormatter().date(from: start) else { return "?" }
    let seconds = Int(Date().timeIntervalSince(date))
    if seconds < 60 { return "\(seconds)s" }
    if seconds < 3600 { return "\(seconds / 60)m\(seconds % 60)s" }
    return "\(seconds / 3600)h\(seconds % 3600 / 60)m"
  }
}

/// A plain left-aligned text table.
enum Table {
  static func render(header: [String], rows: [[String]]) -> String {
    let all = [header] + rows
    let widths = header.indices.map { column in all.map { $0[column].count }.max() ?? 0 }
    return all.map { row in
      row.enumerated().map { column, cell in
        column == row.count - 1 ? cell : cell.padding(toLength: widths[column], withPad: " ", startingAt: 0)
      }.joined(separator: "  ")
    }.joined(separator: "\n")
  }
}
