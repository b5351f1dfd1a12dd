import AppProfiler
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Per-request profiling, as the framework middlewares use it
/// (`AppProfilerHummingbird`, `AppProfilerVapor`): a request that carries
/// `?profile=cpu|wall|alloc` (or the header `X-Profile: <mode>`) is handled
/// normally while a session runs for exactly its lifetime; the response then
/// carries the profile instead of its body, or — with ``store`` set — its
/// normal body plus `X-Profile-Path` (and `X-Profile-URL`) naming the stored
/// file, which the profile server serves under `/profiles/<name>`.
///
/// The profile holds only this request's work: the samples of its task and
/// the child tasks it creates (a task-scoped session), not those of
/// concurrent requests or background work. Profiled requests may overlap:
/// they share one sampler, as does a `/profile` of the same mode and
/// interval. Off by default, and
/// by default honoured only for loopback clients: a profile is an
/// information leak and costs CPU.
public struct RequestProfilingConfiguration: Sendable, Hashable {
  /// Whether the middleware looks at requests at all. `APP_PROFILER_REQUEST_PROFILING=1`.
  public var enabled: Bool = false
  /// Query parameter naming the mode.
  public var queryParameter: String = "profile"
  /// Header naming the mode (when the query parameter is absent).
  public var header: String = "X-Profile"
  /// Query parameter for the output format: `html` (default), `speedscope`, `pprof`.
  public var formatParameter: String = "profile_format"
  /// Query parameter for the interval: µs for cpu/wall, bytes for alloc.
  public var intervalParameter: String = "profile_interval"
  public var defaultFormat: ProfileFormat = .html
  /// Only loopback clients may ask (default). A client whose address the
  /// framework does not report counts as not loopback.
  public var loopbackOnly: Bool = true
  /// Directory to store profiles in; the response keeps its body and gets
  /// `X-Profile-Path`. `APP_PROFILER_PROFILE_STORE`.
  public var store: String? = nil
  /// The middlewares add `trace_id` and `span_id` labels (from the span
  /// swift-distributed-tracing made current for the request) to every
  /// request's samples. Off by default: a label set per request.
  /// `APP_PROFILER_TRACE_LABELS=1`. docs/labels.md.
  public var traceLabels: Bool = false
  /// A request that takes longer than this gets the flight recorder's cpu
  /// profile of its last seconds and a wall profile of the request's work,
  /// awaits included, written to ``store`` (`slow-cpu-…pb.gz`,
  /// `slow-wall-…pb.gz`, served at `/profiles/<name>`), at most once a
  /// second (``RequestProfiler/observe(latency:route:)``). Needs the flight
  /// recorder (`APP_PROFILER_FLIGHT_RECORDER`) and a store; works whether or
  /// not ``enabled`` is set. `APP_PROFILER_SLOW_REQUEST_MS`.
  public var slowRequestThreshold: Duration? = nil

  public init() {}
}

/// Decides whether a request is profiled and runs it under a session.
public struct RequestProfiler: Sendable {
  public let configuration: RequestProfilingConfiguration
  /// The profile server, for `X-Profile-URL` (TCP transport) and sessions' options.
  private let server: ProfileServer?
  private let sessionOptions: SessionOptions

  /// Uses the server's configuration (after `APP_PROFILER_*` variables).
  public init(server: ProfileServer) {
    let effective = server.effectiveConfiguration
    self.configuration = effective.requestProfiling
    self.sessionOptions = effective.sessionOptions
    self.server = server
  }

  public init(configuration: RequestProfilingConfiguration, sessionOptions: SessionOptions = SessionOptions()) {
    self.configuration = configuration
    self.sessionOptions = sessionOptions
    self.server = nil
  }

  /// What to do with one request.
  public enum Decision: Sendable, Equatable {
    /// Serve it normally.
    case none
    /// Profile it.
    case profile(Plan)
    /// It asked for a profile the middleware cannot give (bad mode, format
    /// or interval): serve it normally with `X-Profile-Status: 400 …`.
    case invalid(String)
  }

  public struct Plan: Sendable, Equatable {
    public var mode: Profile.Mode
    public var format: ProfileFormat
    /// µs (cpu, wall) or bytes (alloc); nil: the defaults.
    public var interval: Int?
  }

  /// - Parameters:
  ///   - target: the request target (path and query), as received.
  ///   - header: the value of ``RequestProfilingConfiguration/header``, if any.
  ///   - clientIsLoopback: whether the client connected from 127.0.0.0/8 or
  ///     ::1; nil when the framework does not know.
  public func decide(target: String, header: String?, clientIsLoopback: Bool?) -> Decision {
    guard configuration.enabled else { return .none }
    let query = (try? HTTPQuery(target: target))?.parameters ?? []
    func value(_ name: String) -> String? { query.last { $0.name == name }?.value }
    guard let modeText = value(configuration.queryParameter) ?? header, !modeText.isEmpty else { return .none }
    if configuration.loopbackOnly && clientIsLoopback != true { return .none }
    guard let mode = Profile.Mode(parameter: modeText) else {
      return .invalid("invalid \(configuration.queryParameter)='\(modeText)': allowed \(Profile.Mode.parameterValues)")
    }
    var format = configuration.defaultFormat
    if let formatText = value(configuration.formatParameter) {
      guard let chosen = ProfileFormat(name: formatText) else {
        return .invalid("invalid \(configuration.formatParameter)='\(formatText)': allowed \(ProfileFormat.names)")
      }
      format = chosen
    }
    var interval: Int? = nil
    if let intervalText = value(configuration.intervalParameter) {
      let (allowed, _) = SessionOptions.intervalParameterRange(for: mode)
      guard let number = Int(intervalText), allowed.contains(number) else {
        return .invalid(
          "invalid \(configuration.intervalParameter)='\(intervalText)': allowed \(allowed.lowerBound) ... \(allowed.upperBound) \(mode.isAllocation ? "bytes" : "µs")")
      }
      interval = number
    }
    return .profile(Plan(mode: mode, format: format, interval: interval))
  }

  /// What became of the profile.
  public enum Outcome: Sendable {
    /// Replace the response with this profile.
    case profile(body: [UInt8], contentType: String, fileName: String)
    /// Keep the response; add `X-Profile-Path` (and `X-Profile-URL`).
    case stored(path: String, url: String?)
    /// A profile of another kind (mode, interval) was running: keep the
    /// response, add `X-Profile-Status: 409 …`.
    case busy
    /// Profiling failed: keep the response, add `X-Profile-Status: 503 …`.
    case failed(String)
    /// This build has no sampler (not Linux): keep the response, add
    /// `X-Profile-Status: 501 …`.
    case unavailable
  }

  /// Runs `handler` inside a session of `plan.mode` and returns its result
  /// with what became of the profile. The handler's errors pass through
  /// (the session is cancelled).
  public func run<Result: Sendable>(
    _ plan: Plan, _ handler: () async throws -> Result
  ) async throws -> (Result, Outcome) {
    var options = sessionOptions
    // 1 ms unless asked otherwise: a request lasts milliseconds, and at
    // the 100 Hz of whole-process profiles it would get a handful of
    // samples. Without an explicit interval it shares a sampler of its
    // mode that already runs (a `/profile` at 100 Hz) rather than 409.
    var interval: Duration = .milliseconds(1)
    if let value = plan.interval {
      if plan.mode.isAllocation { options.allocationSamplingRate = value } else { interval = .microseconds(value) }
    } else {
      options.joinsRunningSampler = true
    }
    let session: ProfilingSession
    do {
      session = try Profiler.shared.startTaskScoped(mode: plan.mode, interval: interval, options: options)
    } catch ProfilerError.busy {
      return (try await handler(), .busy)
    } catch ProfilerError.unsupportedPlatform {
      return (try await handler(), .unavailable)
    } catch {
      return (try await handler(), .failed("\(error)"))
    }
    let result: Result
    do {
      result = try await session.withScope { try await handler() }
    } catch {
      session.cancel()
      throw error
    }
    let profile: Profile
    do {
      // On this task's thread, with no hop to another executor.
      profile = try session.stopSynchronously()
    } catch {
      return (result, .failed("\(error)"))
    }
    let body = plan.format.encode(profile, title: "\(plan.mode.rawValue) profile of one request")
    let name = Self.nextFileName(mode: plan.mode, format: plan.format)
    guard let store = configuration.store, !store.isEmpty else {
      return (result, .profile(body: body, contentType: plan.format.contentType, fileName: name))
    }
    do {
      let path = try Self.write(body, name: name, directory: store)
      var url: String? = nil
      if let address = server?.address, address.transport == "tcp" { url = address.url + "/profiles/" + name }
      return (result, .stored(path: path, url: url))
    } catch {
      return (result, .failed("cannot store the profile in \(store): \(error)"))
    }
  }

  // MARK: Slow requests

  private static let lastSlowDump = Atomic<Int64>(0)

  /// The middlewares call this with every request's latency. Over
  /// ``RequestProfilingConfiguration/slowRequestThreshold``, with the flight
  /// recorder running and a store, two of the flight recorder's profiles
  /// of the request's last seconds are written to the store — a second
  /// later, off the request's path, once the window holding the request's
  /// end has closed: the cpu profile of the process (`slow-cpu-…`) and a
  /// wall profile of the request's work on threads and off them, suspended
  /// at its awaits or enqueued (`slow-wall-…`; the flight recorder counts
  /// tasks when the server started it with a threshold set). The wall
  /// profile keeps the samples of this request's trace (`trace_id` label)
  /// when trace labels are on, else of its route (`route` label), else all.
  /// Returns the cpu file's name (nil: nothing written).
  @discardableResult
  public func observe(latency: Duration, route: String) -> String? {
    guard let threshold = configuration.slowRequestThreshold, latency > threshold,
      let store = configuration.store, !store.isEmpty, FlightRecorder.shared.isRunning
    else { return nil }
    let now = Int64(Date().timeIntervalSince1970 * 1000)
    let previous = Self.lastSlowDump.load(ordering: .relaxed)
    guard now - previous >= 1000,
      Self.lastSlowDump.compareExchange(expected: previous, desired: now, ordering: .relaxed).exchanged
    else { return nil }
    let seconds = Int(latency.components.seconds) + 2
    let number = Self.sequence.add(1, ordering: .relaxed).newValue
    let name = "slow-cpu-\(getpid())-\(now)-\(number).pb.gz"
    let wallName = "slow-wall-\(getpid())-\(now)-\(number).pb.gz"
    let filter = Self.slowRequestFilter(labels: Profiler.currentLabels, route: route)
    let latencySeconds = String(
      format: "%.3f", Double(latency.components.seconds) + Double(latency.components.attoseconds) / 1e18)
    DispatchQueue.global(qos: .utility).asyncAfter(deadline: .now() + 1.1) {
      for (mode, file) in [(Profile.Mode.cpu, name), (.wall, wallName)] {
        guard var profile = FlightRecorder.shared.profile(mode: mode, lastSeconds: seconds) else { continue }
        if mode == .wall { profile = profile.filtered(labels: filter) }
        profile.metadata["slow_request_route"] = route
        profile.metadata["slow_request_seconds"] = latencySeconds
        _ = try? Self.write(PprofEncoder().encode(profile), name: file, directory: store)
      }
    }
    return name
  }

  /// Which samples of the flight recorder's wall profile are the slow
  /// request's: its trace, else its route (when the middleware labels
  /// requests), else all.
  static func slowRequestFilter(labels: [String: String], route: String) -> [String: String] {
    if let trace = labels["trace_id"] { return ["trace_id": trace] }
    if labels["route"] == route { return ["route": route] }
    return [:]
  }

  // MARK: Stored files

  private static let sequence = Atomic<Int>(0)

  static func nextFileName(mode: Profile.Mode, format: ProfileFormat) -> String {
    let milliseconds = Int(Date().timeIntervalSince1970 * 1000)
    let number = sequence.add(1, ordering: .relaxed).newValue
    return "request-\(mode.rawValue)-\(getpid())-\(milliseconds)-\(number).\(format.fileExtension)"
  }

  /// Writes with mode 0600 into `directory` (created 0700 when missing).
  static func write(_ bytes: [UInt8], name: String, directory: String) throws -> String {
    if !FileManager.default.fileExists(atPath: directory) {
      try FileManager.default.createDirectory(
        atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
    }
    let path = (directory as NSString).appendingPathComponent(name)
    guard FileManager.default.createFile(atPath: path, contents: Data(bytes), attributes: [.posixPermissions: 0o600]) else {
      throw CocoaError(.fileWriteUnknown)
    }
    return path
  }

  /// A stored profile's file name as `/profiles/<name>` accepts it: our own
  /// names only (no path separators, no dot files).
  static func isStoredName(_ name: String) -> Bool {
    (name.hasPrefix("request-") || name.hasPrefix("slow-")) && !name.contains("/") && !name.contains("..")
      && name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "." || $0 == "_") }
  }
}

extension RequestProfiler.Outcome {
  /// Headers to add to the normal response (stored, busy, failed).
  public var headers: [(String, String)] {
    switch self {
    case .profile: return [("X-Profile-Status", "200 profile in the body")]
    case .stored(let path, let url):
      var result = [("X-Profile-Status", "200 stored"), ("X-Profile-Path", path)]
      if let url { result.append(("X-Profile-URL", url)) }
      return result
    case .busy: return [("X-Profile-Status", "409 a profile of another kind (mode or interval) is running in this process; the request was not profiled")]
    case .failed(let message): return [("X-Profile-Status", "503 \(message)")]
    case .unavailable: return [("X-Profile-Status", "501 profiling is not available in this build (Linux only)")]
    }
  }
}

/// True for 127.0.0.0/8, ::1 and IPv4-mapped loopback addresses.
public func isLoopbackAddress(_ address: String?) -> Bool {
  guard let address else { return false }
  return address.hasPrefix("127.") || address == "::1" || address.hasPrefix("::ffff:127.")
}
