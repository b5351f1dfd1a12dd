import AppProfiler
import Foundation
import Logging
import NIOHTTP1
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What every connection of one server shares: configuration, the running
/// profile's deadline (for `Retry-After`), the connection count. Turns a
/// parsed request into a response; knows nothing about sockets.
///
/// Everything here is synchronous and runs on the server's own threads (a
/// request thread per running profile, the drain and symbolication
/// threads): nothing waits for the Swift concurrency cooperative pool, the
/// main actor or an app executor, so a process whose pool is blocked can
/// still be profiled.
final class ProfileCoordinator: Sendable {
  let configuration: ProfileServerConfiguration
  let logger: Logger
  private let connections = Atomic<Int>(0)
  /// When each running `/profile` recording ends (for `Retry-After`).
  private let runningUntil = Mutex<[UInt64: ContinuousClock.Instant]>([:])
  private let recordings = Atomic<UInt64>(0)

  /// Which web pages may use the server (Host and Origin checks).
  let browserPolicy: BrowserPolicy

  init(configuration: ProfileServerConfiguration, logger: Logger) {
    self.configuration = configuration
    self.browserPolicy = BrowserPolicy(configuration: configuration)
    self.logger = logger
  }

  // MARK: Connections

  /// Admits a new connection unless `maxConnections` are open.
  func admitConnection() -> Bool {
    let now = connections.add(1, ordering: .relaxed).newValue
    if now > configuration.maxConnections {
      connections.subtract(1, ordering: .relaxed)
      return false
    }
    return true
  }

  func releaseConnection() {
    connections.subtract(1, ordering: .relaxed)
  }

  // MARK: Requests

  /// Checks `Authorization: Bearer <token>` in constant time.
  func isAuthorized(_ headers: HTTPHeaders) -> Bool {
    guard let token = configuration.bearerToken else { return true }
    guard let value = headers.first(name: "Authorization"), value.hasPrefix("Bearer ") else { return false }
    let given = Array(value.utf8.dropFirst(7))
    let expected = Array(token.utf8)
    var difference = UInt8(truncatingIfNeeded: given.count ^ expected.count)
    for index in 0..<max(given.count, expected.count) {
      let a = index < given.count ? given[index] : 0
      let b = index < expected.count ? expected[index] : 0
      difference |= a ^ b
    }
    return difference == 0
  }

  /// 409 with `Retry-After`: seconds left of the longest running profile
  /// (1 when unknown: a per-request profile, another caller's session).
  func busyResponse() -> HTTPResponse {
    let remaining = runningUntil.withLock { deadlines -> Int in
      guard let until = deadlines.values.max() else { return 1 }
      let left = until - ContinuousClock.now
      return max(1, Int(left.components.seconds) + (left.components.attoseconds > 0 ? 1 : 0))
    }
    return .error(
      .conflict,
      "a profile of this mode with other sampling (interval or options) is already running in this process; retry in \(remaining) s",
      headers: [("Retry-After", String(remaining))])
  }

  /// Records one profile. Never throws: a failure is the response to send.
  /// While a profile of the same sampling runs (another `/profile`, a
  /// per-request profile), this one shares its sampler; other modes run
  /// next to it; the same mode with other sampling gets 409.
  func record(
    mode: Profile.Mode, duration: Duration, interval: Duration, allocationRate: Int? = nil, lockRate: Duration? = nil,
    cpuEngine: SessionOptions.CPUEngine? = nil, includeProfilerThreads: Bool = false, asyncStacks: Bool? = nil,
    joinsRunningSampler: Bool = false, includesSuspendedTasks: Bool = false, cancellation: RecordingCancellation
  ) -> Result<Profile, HTTPResponseBox> {
    let recording = recordings.add(1, ordering: .relaxed).newValue
    runningUntil.withLock { $0[recording] = ContinuousClock.now + duration }
    defer { _ = runningUntil.withLock { $0.removeValue(forKey: recording) } }
    var options = configuration.sessionOptions
    if let allocationRate { options.allocationSamplingRate = allocationRate }
    if let lockRate { options.lockSamplingRate = lockRate }
    if let cpuEngine { options.cpuEngine = cpuEngine }
    if includeProfilerThreads { options.includeProfilerThreads = true }
    if let asyncStacks { options.asyncStacks = asyncStacks }
    options.joinsRunningSampler = joinsRunningSampler
    options.includesSuspendedTasks = includesSuspendedTasks
    do {
      let profile = try Profiler.shared.recordSynchronously(
        mode: mode, duration: duration, interval: interval, options: options, cancellation: cancellation)
      logger.info("profile recorded", metadata: ["mode": "\(mode.rawValue)", "samples": "\(profile.totalCount)"])
      return .success(profile)
    } catch {
      return .failure(HTTPResponseBox(response(for: error)))
    }
  }

  /// `GET /profile`: records, encodes in the asked format, answers.
  func profile(_ request: ProfileRequest, cancellation: RecordingCancellation) -> HTTPResponse {
    switch record(
      mode: request.mode, duration: request.duration, interval: request.interval, allocationRate: request.allocationRate,
      lockRate: request.lockRate,
      cpuEngine: request.cpuEngine, includeProfilerThreads: request.includeProfilerThreads,
      asyncStacks: request.asyncStacks, joinsRunningSampler: !request.intervalGiven,
      includesSuspendedTasks: request.includesSuspendedTasks, cancellation: cancellation)
    {
    case .failure(let box): return box.response
    case .success(let profile):
      var view = profile.filtered(labels: request.labelFilter)
      if let key = request.groupBy { view = view.grouped(by: key) }
      return Self.encode(view, as: request.format)
    }
  }

  /// `GET /profiles/<name>`: a file of the per-request profile store.
  func storedProfile(name: String) -> HTTPResponse {
    guard let store = configuration.requestProfiling.store, !store.isEmpty else {
      return .error(.notFound, "no profile store is configured (requestProfiling.store, APP_PROFILER_PROFILE_STORE)")
    }
    guard RequestProfiler.isStoredName(name) else {
      return .error(.notFound, "no stored profile named '\(name)'")
    }
    let path = (store as NSString).appendingPathComponent(name)
    guard let data = FileManager.default.contents(atPath: path) else {
      return .error(.notFound, "no stored profile named '\(name)' in \(store)")
    }
    let type =
      name.hasSuffix(".html") ? "text/html; charset=utf-8" : name.hasSuffix(".json") ? "application/json" : "application/octet-stream"
    return HTTPResponse(
      status: .ok, headers: [("Content-Type", type), ("Content-Disposition", "inline; filename=\"\(name)\"")], body: [UInt8](data))
  }

  /// `GET /debug/pprof/allocs` without `seconds`: the continuous totals, or
  /// 400 saying how to get them.
  func cumulativeAllocations() -> HTTPResponse {
    guard let profile = Profiler.shared.cumulativeAllocationProfile() else {
      return .error(
        .badRequest,
        "continuous allocation sampling is off in this process: start it with APP_PROFILER_ALLOC_ALWAYS_ON=1 "
          + "(or ProfileServerConfiguration.continuousAllocationSampling = true) for cumulative totals, "
          + "or ask for a window: /debug/pprof/allocs?seconds=N")
    }
    return Self.encode(profile, as: .pprof)
  }

  /// `GET /debug/pprof/heap` without `seconds`: what is alive among the
  /// allocations sampled since start, or 400 saying how to get it.
  func heap() -> HTTPResponse {
    guard let profile = Profiler.shared.heapProfile() else {
      return .error(
        .badRequest,
        "the live heap is tracked only while allocations are sampled: start the process with APP_PROFILER_HEAP=1 "
          + "(or ProfileServerConfiguration.continuousAllocationSampling = true), "
          + "or ask for a window: /debug/pprof/heap?seconds=N (what it allocated and still holds at its end)")
    }
    return Self.encode(profile, as: .pprof)
  }

  /// `GET /debug/pprof/profile`, `/debug/pprof/wall`, `/debug/pprof/allocs?seconds=N`:
  /// what scrapers ask for, every interval, for most of it. 100 Hz, like
  /// Go's: cheap enough to leave a scraper on (timers, no cost per context
  /// switch; docs/continuous-profiling.md). Never 409 for a running profile
  /// of the mode: they read its sampler, whatever its interval (the
  /// profile's period says which).
  static let pprofInterval: Duration = .milliseconds(10)

  func pprof(mode: Profile.Mode, duration: Duration, cancellation: RecordingCancellation) -> HTTPResponse {
    switch record(
      mode: mode, duration: duration, interval: Self.pprofInterval, joinsRunningSampler: true, cancellation: cancellation)
    {
    case .failure(let box): return box.response
    case .success(let profile): return Self.encode(profile, as: .pprof)
    }
  }

  /// `GET /debug/pprof/flight`: the flight recorder's last `seconds` (all it
  /// keeps when nil), or 400 saying how to turn it on.
  func flight(mode: Profile.Mode, seconds: Int?) -> HTTPResponse {
    guard let kept = FlightRecorder.shared.seconds else {
      return .error(
        .badRequest,
        "the flight recorder is off in this process: start it with APP_PROFILER_FLIGHT_RECORDER=<seconds> "
          + "(or ProfileServerConfiguration.flightRecorderSeconds)")
    }
    guard let profile = FlightRecorder.shared.profile(mode: mode, lastSeconds: min(seconds ?? kept, kept)) else {
      return .error(.serviceUnavailable, "the flight recorder has not closed its first one-second window yet; retry in 1 s",
        headers: [("Retry-After", "1")])
    }
    return Self.encode(profile, as: .pprof)
  }

  /// `/debug/pprof/block`, `/mutex` without `seconds`: the totals since
  /// continuous lock sampling started (APP_PROFILER_LOCKS=1), else a valid
  /// pprof profile with Go's sample types and no samples — what Go answers
  /// while block or mutex profiling is off, and what scrapers' default
  /// configurations (Alloy, Parca) expect.
  func cumulativeLocks(_ mode: Profile.Mode) -> HTTPResponse {
    if let profile = Profiler.shared.cumulativeLockProfile(mode) { return Self.encode(profile, as: .pprof) }
    var profile = Profile(
      mode: mode, engine: "none (lock sampling is off: APP_PROFILER_LOCKS=1, or seconds=N for a window)",
      sampleTypes: [.init("contentions", "count"), .init("delay", "nanoseconds")], defaultSampleType: 1,
      periodType: .init("contentions", "count"), period: 1,
      startTimeNanoseconds: UInt64(max(0, Date().timeIntervalSince1970 * 1e9)), durationNanoseconds: 0)
    profile.metadata["lock_sampling"] =
      "off: start the process with APP_PROFILER_LOCKS=1 for cumulative totals, or ask for a window with seconds=N"
    return Self.encode(profile, as: .pprof)
  }

  static func fileName(_ profile: Profile) -> String {
    "\(profile.mode.rawValue)-\(getpid())-\(profile.startTimeNanoseconds / 1_000_000_000)"
  }

  static func encode(_ profile: Profile, as format: ProfileFormat) -> HTTPResponse {
    let name = fileName(profile) + "." + format.fileExtension
    let title = "\(profile.mode.rawValue) profile of pid \(getpid())"
    // Binary formats download; text formats show in a browser.
    let disposition = (format.isBinary ? "attachment" : "inline") + "; filename=\"\(name)\""
    var headers = [("Content-Type", format.contentType)]
    if format != .html { headers.append(("Content-Disposition", disposition)) }
    return HTTPResponse(status: .ok, headers: headers, body: format.encode(profile, title: title))
  }

  /// `GET /threads` (`/debug/pprof/threads`): one wall tick.
  func threads(format: ThreadsFormat) -> HTTPResponse {
    do {
      let snapshot = try Profiler.shared.threadSnapshotSynchronously(options: configuration.sessionOptions)
      switch format {
      case .text: return .text(ThreadDumpEncoder().text(snapshot))
      case .grouped: return .text(ThreadDumpEncoder().groupedText(snapshot))
      case .json:
        return HTTPResponse(status: .ok, headers: [("Content-Type", "application/json")], body: ThreadDumpEncoder().json(snapshot))
      case .pprof:
        return HTTPResponse(
          status: .ok,
          headers: [("Content-Type", "application/octet-stream"), ("Content-Disposition", "attachment; filename=\"threads.pb.gz\"")],
          body: PprofEncoder().encode(snapshot))
      }
    } catch {
      return response(for: error)
    }
  }

  /// `/debug/pprof/tasks`: a task dump, on the request's own thread (no
  /// cooperative pool). A runtime whose task layout is unknown gets 501
  /// with the reason.
  func tasks(format: ThreadsFormat, suspendedFor: Duration?) -> HTTPResponse {
    do {
      let dump = try Profiler.shared.taskDumpSynchronously(suspendedFor: suspendedFor)
      switch format {
      case .text: return .text(TaskDumpEncoder().text(dump))
      case .grouped, .json: return .text(TaskDumpEncoder().groupedText(dump))
      case .pprof:
        return HTTPResponse(
          status: .ok,
          headers: [("Content-Type", "application/octet-stream"), ("Content-Disposition", "attachment; filename=\"tasks.pb.gz\"")],
          body: PprofEncoder().encode(dump))
      }
    } catch ProfilerError.unsupported(let reason) {
      return .error(.notImplemented, reason)
    } catch {
      return response(for: error)
    }
  }

  enum ThreadsFormat {
    case text, grouped, json, pprof
  }

  private func response(for error: any Error) -> HTTPResponse {
    switch error {
    case ProfilerError.busy:
      return busyResponse()
    case ProfilerError.unsupportedPlatform:
      return .error(
        .notImplemented, "profiling is not available in this build: app-profiler samples on Linux only (no sampler here)")
    case ProfilerError.invalidParameter(let name, let value, let allowed)
    where name == "interval" || name == "duration" || name == "allocationSamplingRate" || name == "lockSamplingRate":
      return .error(.badRequest, "invalid parameter \(name)='\(value)': allowed \(allowed)")
    case is CancellationError:
      // The client went away; nobody reads this.
      return .error(.serviceUnavailable, "cancelled")
    default:
      logger.error("profiling failed", metadata: ["error": "\(error)"])
      return .error(.serviceUnavailable, "this process cannot be profiled here: \(error)")
    }
  }

  /// `/debug/pprof/symbol`: GET → `num_symbols: 1`; POST `0x1+0x2…` → a
  /// line `0xADDR name` for each address that has a name.
  func symbol(body: [UInt8]?) -> HTTPResponse {
    guard let body else { return .text("num_symbols: 1\n") }
    let text = String(decoding: body, as: UTF8.self)
    var addresses: [UInt64] = []
    for token in text.split(whereSeparator: { $0 == "+" || $0.isWhitespace }) {
      var digits = Substring(token)
      if digits.hasPrefix("0x") || digits.hasPrefix("0X") { digits = digits.dropFirst(2) }
      if let address = UInt64(digits, radix: 16) { addresses.append(address) }
    }
    let names = Profiler.shared.symbolNames(for: addresses)
    var lines = ""
    for address in addresses {
      if let name = names[address] { lines += "0x\(String(address, radix: 16)) \(name)\n" }
    }
    return .text(lines)
  }
}

/// A response carried as a failure value.
struct HTTPResponseBox: Error, Sendable {
  var response: HTTPResponse
  init(_ response: HTTPResponse) { self.response = response }
}
