import Foundation

/// What a profilable process writes to `<dir>/app-profiler-<pid>.json`, so
/// `app-profiler list` (or anything else) can find it.
///
/// ```json
/// {"pid":4242,"processStartTicks":123456,"transport":"unix",
///  "address":"/tmp/app_profiler/app-profiler-4242.sock","url":"http://localhost",
///  "executable":"/srv/app/Server","arguments":["serve"],
///  "startTime":"2026-11-26T15:00:00Z","version":"0.1.0"}
/// ```
public struct DiscoveryRecord: Codable, Sendable, Hashable {
  public var pid: Int32
  /// Start time of the process in clock ticks since boot (`/proc/<pid>/stat`
  /// field 22): a record whose pid now belongs to another process is stale.
  public var processStartTicks: UInt64
  /// `unix` or `tcp`.
  public var transport: String
  /// The socket path, or `host:port`.
  public var address: String
  /// Base URL for HTTP clients (for unix, combine with the socket path).
  public var url: String
  public var executable: String
  public var arguments: [String]
  /// When the server started (ISO 8601, UTC).
  public var startTime: String
  /// Library version of the process.
  public var version: String

  /// `seconds` since the epoch as "2026-11-26T15:00:00Z". By hand:
  /// Foundation's ISO8601DateFormatter loads ICU's locale data, 4.8 MB of
  /// resident memory in a process that uses none.
  static func utcTimestamp(_ seconds: time_t) -> String {
    var value = seconds
    var parts = tm()
    guard gmtime_r(&value, &parts) != nil else { return "1970-01-01T00:00:00Z" }
    func two(_ number: Int32) -> String { number < 10 ? "0\(number)" : "\(number)" }
    return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T"
      + "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec))Z"
  }

  /// `<dir>/app-profiler-<pid>.json`.
  public static func path(directory: String, pid: Int32) -> String {
    "\(directory)/app-profiler-\(pid).json"
  }

  /// True when the process that wrote the record is still the one at `pid`.
  public var isAlive: Bool {
    guard kill(pid, 0) == 0 || errno == EPERM else { return false }
    return ProcessIdentity.startTicks(of: pid) == processStartTicks
  }

  /// Writes atomically (temporary file, then rename), mode 0600.
  func write(to path: String) throws {
    let data = try JSONEncoder().encode(self)
    let temporary = path + ".tmp-\(getpid())"
    let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o600)
    guard fd >= 0 else { throw ProfileServerError.bindFailed(address: path, reason: "cannot write discovery record") }
    _ = data.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
    close(fd)
    guard rename(temporary, path) == 0 else {
      unlink(temporary)
      throw ProfileServerError.bindFailed(address: path, reason: "cannot rename discovery record")
    }
  }

  /// Every record in `directory` (unreadable ones as nil, with their path).
  public static func all(in directory: String) -> [(path: String, record: DiscoveryRecord?)] {
    guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return [] }
    return names.filter { $0.hasPrefix("app-profiler-") && $0.hasSuffix(".json") }.sorted().map { name in
      let path = directory + "/" + name
      let record = FileManager.default.contents(atPath: path).flatMap { try? JSONDecoder().decode(DiscoveryRecord.self, from: $0) }
      return (path, record)
    }
  }

  /// Removes records (and their sockets) of processes that are gone.
  /// Returns the removed record paths.
  @discardableResult
  public static func removeStale(in directory: String) -> [String] {
    var removed: [String] = []
    for (path, record) in all(in: directory) {
      if let record, record.isAlive { continue }
      if record == nil, let modified = try? FileManager.default.attributesOfItem(atPath: path)[.modificationDate] as? Date,
        Date().timeIntervalSince(modified) < 5
      {
        continue  // being written right now
      }
      if let record, record.transport == "unix", record.address.hasPrefix(directory + "/") {
        unlink(record.address)
      }
      unlink(path)
      removed.append(path)
    }
    return removed
  }
}

/// Identity of a process that survives pid reuse.
enum ProcessIdentity {
  /// Field 22 (starttime) of /proc/<pid>/stat; 0 when unreadable. The comm
  /// field (2) may contain spaces and parentheses, so fields are counted
  /// after the last ')'.
  static func startTicks(of pid: Int32) -> UInt64 {
    guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/stat"),
      let text = String(data: data, encoding: .utf8),
      let close = text.lastIndex(of: ")")
    else { return 0 }
    let fields = text[text.index(after: close)...].split(separator: " ")
    // After ')': field 3 (state) is index 0, so field 22 is index 19.
    guard fields.count > 19 else { return 0 }
    return UInt64(fields[19]) ?? 0
  }
}
