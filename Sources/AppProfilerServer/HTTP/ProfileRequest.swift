import AppProfiler

/// A validated `GET /profile` request.
///
/// | parameter | values | default |
/// |---|---|---|
/// | `mode` | `cpu`, `wall`, `alloc` (`object`: the seed's name for it), `heap`, `block`, `mutex` | `cpu` |
/// | `duration` | seconds, decimal, 0 < d ≤ max duration | 30 |
/// | `interval` | cpu/wall: microseconds, 100 … 1000000; alloc: bytes, 1 … 1073741824; block/mutex: the lock sampling rate in ns, 1 … 1000000000 | 10000 µs (100 Hz; joins a running sampler of the mode at any interval) / 524288 B / 100000 ns |
/// | `format` | `speedscope`, `pprof`, `collapsed`, `html` | `speedscope` |
/// | `engine` | cpu only: `auto`, `perf` (perf events), `timer` (POSIX CPU timers), `ticker` (the CPU ticker) | the server's |
/// | `include_profiler` | `1` keeps the profiler's own threads in the profile | `0` |
/// | `async` | `0` leaves Swift tasks' async callers out of stacks (thread stacks only) | the server's (`1`) |
/// | `label` | `key=value[,key=value…]`: only samples carrying these labels | all samples |
/// | `group_by` | a label key: one group (speedscope profile, root frame) per value | none |
/// | `tasks` | wall only: `1` also counts every Swift task on no thread (suspended, enqueued) | `0` |
struct ProfileRequest: Sendable, Equatable {
  var mode: Profile.Mode = .cpu
  var duration: Duration = .seconds(30)
  var interval: Duration = Profiler.defaultInterval
  /// No `interval` given: a sampler of the mode already running at another
  /// interval (a per-request profile at 1 ms, say) is shared instead of 409.
  var intervalGiven = false
  var format: ProfileFormat = .speedscope
  /// Alloc mode: mean bytes between samples; nil = the server's setting.
  var allocationRate: Int? = nil
  /// Block and mutex modes: the lock sampling rate; nil = the server's setting.
  var lockRate: Duration? = nil
  /// cpu mode: the engine asked for; nil = the server's setting.
  var cpuEngine: SessionOptions.CPUEngine? = nil
  /// Keep the profiler's own threads (drain, requests, the server's loop).
  var includeProfilerThreads = false
  /// Stitch async callers into stacks; nil = the server's setting.
  var asyncStacks: Bool? = nil
  /// Keep only samples with these labels (`label=route=/a`).
  var labelFilter: [String: String] = [:]
  /// Regroup samples by this label (`group_by=route`).
  var groupBy: String? = nil
  /// Wall: every task's time off threads too (`tasks=1`).
  var includesSuspendedTasks = false

  static let parameterNames = [
    "async", "duration", "engine", "format", "group_by", "include_profiler", "interval", "label", "mode", "tasks",
  ]

  /// Parses and validates; the error names the parameter and its allowed values.
  static func parse(_ query: HTTPQuery, maxDuration: Duration) throws(RequestError) -> ProfileRequest {
    let parameters = try QueryParameters(query, allowed: parameterNames)
    var request = ProfileRequest()
    if let mode = parameters.string("mode") {
      guard let parsed = Profile.Mode(parameter: mode) else {
        throw .badParameter("mode", mode, allowed: Profile.Mode.parameterValues)
      }
      request.mode = parsed
    }
    // The configured maximum, within the library's 24 h.
    if let duration = try parameters.seconds("duration", max: maxDuration, allowed: { "seconds, 0 < duration ≤ \($0)" }) {
      request.duration = duration
    }
    if let format = parameters.string("format") {
      guard let parsed = ProfileFormat(name: format) else {
        throw .badParameter("format", format, allowed: ProfileFormat.names)
      }
      request.format = parsed
    }
    request.includeProfilerThreads = try parameters.flag("include_profiler") ?? false
    request.asyncStacks = try parameters.flag("async")
    request.includesSuspendedTasks = try parameters.flag("tasks") ?? false
    if let label = parameters.string("label") {
      for pair in label.split(separator: ",", omittingEmptySubsequences: false) {
        let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty else {
          throw .badParameter("label", label, allowed: "key=value, or several separated by commas")
        }
        request.labelFilter[String(parts[0])] = String(parts[1])
      }
    }
    if let groupBy = parameters.string("group_by") {
      guard !groupBy.isEmpty else { throw .badParameter("group_by", groupBy, allowed: "a label key, e.g. route") }
      request.groupBy = groupBy
    }
    // Its unit depends on the mode.
    let (range, unit) = SessionOptions.intervalParameterRange(for: request.mode)
    let what =
      request.mode.isAllocation
      ? "bytes between allocation samples" : request.mode.isLock ? "lock sampling rate" : "microseconds"
    if let number = try parameters.integer(
      "interval", in: range, allowed: "\(what), \(range.lowerBound) ... \(range.upperBound) \(unit)")
    {
      request.intervalGiven = true
      if request.mode.isAllocation {
        request.allocationRate = number
      } else if request.mode.isLock {
        request.lockRate = .nanoseconds(number)
      } else {
        request.interval = .microseconds(number)
      }
    }
    if parameters.string("engine") != nil {
      guard request.mode == .cpu else {
        throw RequestError(status: .badRequest, message: "parameter 'engine' applies to mode=cpu only")
      }
      request.cpuEngine = try parameters.choice(
        "engine", ["auto": .automatic, "perf": .perfEvents, "timer": .posixTimers, "ticker": .cpuTicker])
    }
    if request.includesSuspendedTasks && request.mode != .wall {
      throw RequestError(status: .badRequest, message: "parameter 'tasks' applies to mode=wall only")
    }
    if request.duration > maxDuration { request.duration = maxDuration }
    return request
  }
}

/// `seconds` of `/debug/pprof/profile`, `/debug/pprof/wall` and
/// `/debug/pprof/allocs` (net/http/pprof's name).
enum PprofSeconds {
  /// The duration asked for (capped at `maxDuration`); 30 s, or `maxDuration`
  /// when that is shorter, when the query has none.
  static func parse(_ query: HTTPQuery, maxDuration: Duration) throws(RequestError) -> Duration {
    try parseOptional(query, maxDuration: maxDuration) ?? min(.seconds(30), maxDuration)
  }

  /// `ignored`: parameters accepted and ignored (`gc` of the heap profile:
  /// scrapers send `gc=1`, which asks Go to collect garbage first).
  static func parseOptional(
    _ query: HTTPQuery, maxDuration: Duration, ignoring ignored: Set<String> = []
  ) throws(RequestError) -> Duration? {
    let parameters = try QueryParameters(query, allowed: ["seconds"], ignoring: ignored)
    let seconds = try parameters.seconds("seconds", max: maxDuration) { "0 < seconds ≤ \($0)" }
    return seconds.map { min($0, maxDuration) }
  }
}
