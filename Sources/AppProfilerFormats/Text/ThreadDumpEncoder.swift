/// Every thread's current stack, from a one-tick wall profile: the last
/// sample of each thread, leaf first, like a debugger's backtrace.
///
/// ```
/// 3 threads of pid 4242
///
/// thread 4242 "server" idle, blocked in epoll_wait (do_epoll_wait)
///   #0 epoll_wait
///   #1 NIOPosix.Epoll.wait(...)
/// ```
public struct ThreadDumpEncoder: Sendable {
  public init() {}

  struct Entry {
    var id: Int32
    var name: String
    var idle: Bool
    var frames: [String]
    var state: String?

    /// `idle`/`running`, then the kernel's word where the dump has one.
    var status: String {
      (idle ? "idle" : "running") + (state.map { $0 == "running" ? "" : ", \($0)" } ?? "")
    }
  }

  func entries(_ profile: Profile) -> [Entry] {
    profile.threads.filter { $0.id != 0 && !$0.samples.isEmpty }.sorted { $0.id < $1.id }.map { thread in
      let sample = thread.samples.last!
      return Entry(
        id: thread.id, name: thread.name, idle: sample.isIdle,
        frames: TopFunctions.names(profile, sample.stack).reversed(), state: thread.kernelState)
    }
  }

  /// Plain text.
  public func text(_ profile: Profile) -> String {
    let list = entries(profile)
    var lines = ["\(list.count) threads of pid \(profile.metadata["pid"] ?? "?")", ""]
    for entry in list {
      lines.append("thread \(entry.id) \"\(entry.name)\" \(entry.status)")
      for (index, frame) in entry.frames.enumerated() { lines.append("  #\(index) \(frame)") }
      lines.append("")
    }
    return lines.joined(separator: "\n")
  }

  /// Threads grouped by identical stack, most common first (like
  /// net/http/pprof's goroutine `debug=1`).
  public func groupedText(_ profile: Profile) -> String {
    var groups: [[String]: [Entry]] = [:]
    for entry in entries(profile) { groups[entry.frames, default: []].append(entry) }
    let sorted = groups.sorted { ($0.value.count, $1.key.count) > ($1.value.count, $0.key.count) }
    var lines = ["threads profile: total \(groups.values.reduce(0) { $0 + $1.count })", ""]
    for (frames, members) in sorted {
      let names = members.map { "\($0.name) (\($0.id)\($0.state.map { $0 == "running" ? "" : ", \($0)" } ?? ""))" }
        .joined(separator: ", ")
      lines.append("\(members.count) @ \(names)")
      for frame in frames { lines.append("#\t\(frame)") }
      lines.append("")
    }
    return lines.joined(separator: "\n")
  }

  /// JSON: `{"pid":…, "threads":[{"id":…, "name":…, "idle":…, "frames":[leaf, …]}]}`.
  public func json(_ profile: Profile) -> [UInt8] {
    var writer = JSONWriter()
    writer.beginObject()
    writer.field("pid", Int(profile.metadata["pid"] ?? "0") ?? 0)
    writer.key("threads")
    writer.beginArray()
    for entry in entries(profile) {
      writer.beginObject()
      writer.field("id", entry.id)
      writer.field("name", entry.name)
      writer.key("idle")
      writer.bool(entry.idle)
      if let state = entry.state { writer.field("state", state) }
      writer.key("frames")
      writer.beginArray()
      for frame in entry.frames { writer.string(frame) }
      writer.endArray()
      writer.endObject()
    }
    writer.endArray()
    writer.endObject()
    return writer.bytes
  }
}
