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

  static let parameterNames: Set<String> = [
    "mode", "duration", "interval", "format", "engine", "include_profiler", "async", "label", "group_by", "tasks",
  ]

  /// Parses and validates; the error names the parameter and its allowed values.
  static func parse(_ query: HTTPQuery, maxDuration: Duration) throws(RequestError) -> ProfileRequest {
    var request = ProfileRequest()
    var seen: Set<String> = []
    var interval: String? = nil  // its unit depends on the mode
    var engine: String? = nil  // valid for cpu mode only
    for (name, value) in query.parameters {
      guard parameterNames.contains(name) else {
        throw RequestError(
          status: .badRequest,
          message: "unknown parameter '\(name)': allowed \(parameterNames.sorted().joined(separator: ", "))")
      }
      guard seen.insert(name).inserted else {
        throw RequestError(status: .badRequest, message: "parameter '\(name)' given more than once")
      }
      switch name {
      case "mode":
        guard let mode = Profile.Mode(parameter: value) else {
          throw .badParameter("mode", value, allowed: Profile.Mode.parameterValues)
        }
        request.mode = mode
      case "duration":
        // The configured maximum, within the library's 24 h.
        let maxSeconds = min(86_400, Double(maxDuration.components.seconds) + Double(maxDuration.components.attoseconds) / 1e18)
        guard let seconds = Double(value), seconds.isFinite, seconds > 0, seconds <= maxSeconds,
          value.allSatisfy({ $0.isNumber || $0 == "." })
        else {
          throw .badParameter("duration", value, allowed: "seconds, 0 < duration ≤ \(formatSeconds(maxSeconds))")
        }
        request.duration = .nanoseconds(Int64((seconds * 1e9).rounded()))
      case "interval":
        interval = value
      case "engine":
        engine = value
      case "include_profiler":
        guard value == "0" || value == "1" else { throw .badParameter("include_profiler", value, allowed: "0, 1") }
        request.includeProfilerThreads = value == "1"
      case "async":
        guard value == "0" || value == "1" else { throw .badParameter("async", value, allowed: "0, 1") }
        request.asyncStacks = value == "1"
      case "label":
        var filter: [String: String] = [:]
        for pair in value.split(separator: ",", omittingEmptySubsequences: false) {
          let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
          guard parts.count == 2, !parts[0].isEmpty else {
            throw .badParameter("label", value, allowed: "key=value, or several separated by commas")
          }
          filter[String(parts[0])] = String(parts[1])
        }
        request.labelFilter = filter
      case "tasks":
        guard value == "0" || value == "1" else { throw .badParameter("tasks", value, allowed: "0, 1") }
        request.includesSuspendedTasks = value == "1"
      case "group_by":
        guard !value.isEmpty else { throw .badParameter("group_by", value, allowed: "a label key, e.g. route") }
        request.groupBy = value
      case "format":
        guard let format = ProfileFormat(name: value) else {
          throw .badParameter("format", value, allowed: ProfileFormat.names)
        }
        request.format = format
      default:
        break
      }
    }
    if let value = interval {
      request.intervalGiven = true
      let (range, unit) = SessionOptions.intervalParameterRange(for: request.mode)
      guard let number = Int(value), range.contains(number) else {
        let what =
          request.mode.isAllocation
          ? "bytes between allocation samples" : request.mode.isLock ? "lock sampling rate" : "microseconds"
        throw .badParameter("interval", value, allowed: "\(what), \(range.lowerBound) ... \(range.upperBound) \(unit)")
      }
      if request.mode.isAllocation {
        request.allocationRate = number
      } else if request.mode.isLock {
        request.lockRate = .nanoseconds(number)
      } else {
        request.interval = .microseconds(number)
      }
    }
    if let value = engine {
      guard request.mode == .cpu else {
        throw RequestError(status: .badRequest, message: "parameter 'engine' applies to mode=cpu only")
      }
      switch value {
      case "auto": request.cpuEngine = .automatic
      case "perf": request.cpuEngine = .perfEvents
      case "timer": request.cpuEngine = .posixTimers
      case "ticker": request.cpuEngine = .cpuTicker
      default: throw .badParameter("engine", value, allowed: "auto, perf, timer, ticker")
      }
    }
    if request.includesSuspendedTasks && request.mode != .wall {
      throw RequestError(status: .badRequest, message: "parameter 'tasks' applies to mode=wall only")
    }
    if request.duration > maxDuration { request.duration = maxDuration }
    return request
  }

  static func formatSeconds(_ seconds: Double) -> String {
    seconds == seconds.rounded() ? String(Int(seconds)) : String(seconds)
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
    var duration: Duration? = nil
    for (name, value) in query.parameters {
      if ignored.contains(name) { continue }
      guard name == "seconds" else {
        let allowed = (["seconds"] + ignored.sorted()).joined(separator: ", ")
        throw RequestError(status: .badRequest, message: "unknown parameter '\(name)': allowed \(allowed)")
      }
      let maxSeconds = min(86_400, Double(maxDuration.components.seconds))
      guard let seconds = Double(value), seconds.isFinite, seconds > 0, seconds <= maxSeconds,
        value.allSatisfy({ $0.isNumber || $0 == "." })
      else {
        throw .badParameter("seconds", value, allowed: "0 < seconds ≤ \(ProfileRequest.formatSeconds(maxSeconds))")
      }
      duration = .nanoseconds(Int64((seconds * 1e9).rounded()))
    }
    return duration.map { min($0, maxDuration) }
  }
}
