/// A task dump (`/debug/pprof/tasks`) as text, the way Go prints its
/// goroutine dump: `debug=1` groups tasks with the same await chain, most
/// common first; `debug=2` lists every task. Frames are leaf first, each
/// with its file:line where the profile has one.
///
/// ```
/// 40 tasks: suspended, waiting on continuation (longest 12 s)
///   #0 ConnectionPool.connection() (Pool.swift:88)
///   #1 Handler.handle(request:) (Handler.swift:31)
/// ```
public struct TaskDumpEncoder: Sendable {
  public init() {}

  struct Entry {
    var frames: [String]
    var labels: [String: String]
    var suspended: Int64
    var age: Int64?

    var state: String { labels["state"] ?? "?" }
    var waitingOn: String { labels["waiting_on"] ?? "unknown" }
    /// The task's own labels (route, trace_id…), without the dump's.
    var ownLabels: [(String, String)] {
      labels.filter { !["state", "waiting_on", "task_id", "parent_id", "thread"].contains($0.key) }.sorted { $0.key < $1.key }
    }
  }

  func entries(_ profile: Profile) -> [Entry] {
    profile.threads.flatMap(\.samples).map { sample in
      Entry(
        frames: Self.frames(profile, sample.stack), labels: sample.labels,
        suspended: sample.numericLabels["suspended_seconds"] ?? 0, age: sample.numericLabels["age_seconds"])
    }
  }

  /// Leaf first: `name (file:line)`; a function's consecutive partial
  /// functions (one per await) as one frame.
  static func frames(_ profile: Profile, _ stack: Int) -> [String] {
    var result: [String] = []
    for locationIndex in profile.stacks[stack] {
      let location = profile.locations[locationIndex]
      if location.lines.isEmpty {
        result.append(profile.fallbackName(for: location))
        continue
      }
      for line in location.lines {
        let function = profile.functions[line.function]
        let file = function.file.split(separator: "/").last.map(String.init) ?? ""
        let frame = file.isEmpty || line.line == 0 ? function.name : "\(function.name) (\(file):\(line.line))"
        if let last = result.last, last == function.name || last.hasPrefix(function.name + " (") { continue }
        result.append(frame)
      }
    }
    return result
  }

  private func header(_ profile: Profile, _ list: [Entry]) -> [String] {
    var states: [String: Int] = [:]
    for entry in list { states[entry.state, default: 0] += 1 }
    let summary = states.sorted { $0.value > $1.value }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
    var lines = ["tasks profile: total \(list.count)\(summary.isEmpty ? "" : " (\(summary))") of pid \(profile.metadata["pid"] ?? "?")"]
    if let missing = profile.metadata["tasks_note"] { lines.append("note: \(missing)") }
    if let clock = profile.metadata["suspension_clock_seconds"] {
      lines.append("suspension times are counted from the first task dump, \(clock) s ago")
    }
    lines.append("")
    return lines
  }

  /// `debug=1`: tasks grouped by chain, state and what they wait on.
  public func groupedText(_ profile: Profile) -> String {
    let list = entries(profile)
    struct Key: Hashable {
      var frames: [String]
      var state: String
      var waitingOn: String
    }
    var groups: [Key: [Entry]] = [:]
    for entry in list { groups[Key(frames: entry.frames, state: entry.state, waitingOn: entry.waitingOn), default: []].append(entry) }
    let sorted = groups.sorted { ($0.value.count, $1.key.frames.count) > ($1.value.count, $0.key.frames.count) }
    var lines = header(profile, list)
    for (key, members) in sorted {
      let longest = members.map(\.suspended).max() ?? 0
      var title = "\(members.count) task\(members.count == 1 ? "" : "s"): \(key.state)"
      if key.state != "running" { title += ", waiting on \(key.waitingOn)" }
      if longest > 0 { title += " (longest \(longest) s)" }
      lines.append(title)
      for (index, frame) in key.frames.enumerated() { lines.append("  #\(index) \(frame)") }
      lines.append("")
    }
    return lines.joined(separator: "\n")
  }

  /// `debug=2`: one entry per task, longest suspended first.
  public func text(_ profile: Profile) -> String {
    let list = entries(profile).sorted { ($0.suspended, $1.labels["task_id"] ?? "") > ($1.suspended, $0.labels["task_id"] ?? "") }
    var lines = header(profile, list)
    for entry in list {
      var title = "task \(entry.labels["task_id"] ?? "?")"
      if let parent = entry.labels["parent_id"] { title += " (child of \(parent))" }
      title += ": \(entry.state)"
      if let thread = entry.labels["thread"] { title += " on thread \"\(thread)\"" }
      if entry.state != "running" { title += ", waiting on \(entry.waitingOn) for \(entry.suspended) s" }
      if let age = entry.age { title += ", created \(age) s ago" }
      let own = entry.ownLabels
      if !own.isEmpty { title += "; " + own.map { "\($0.0)=\($0.1)" }.joined(separator: " ") }
      lines.append(title)
      for (index, frame) in entry.frames.enumerated() { lines.append("  #\(index) \(frame)") }
      lines.append("")
    }
    return lines.joined(separator: "\n")
  }
}
