import AppProfiler
import Logging
import NIOHTTP1
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// What every connection of one server shares: configuration, the running
/// profile's deadline (for `Retry-After`), the connection count. Turns a
/// parsed request into a response; knows nothing about sockets.
final class ProfileCoordinator: Sendable {
  let configuration: ProfileServerConfiguration
  let logger: Logger
  private let connections = Atomic<Int>(0)
  private let runningUntil = Mutex<ContinuousClock.Instant?>(nil)

  init(configuration: ProfileServerConfiguration, logger: Logger) {
    self.configuration = configuration
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

  /// 409 with `Retry-After`: seconds left of the running profile (1 when unknown).
  func busyResponse() -> HTTPResponse {
    let remaining = runningUntil.withLock { until -> Int in
      guard let until else { return 1 }
      let left = until - ContinuousClock.now
      return max(1, Int(left.components.seconds) + (left.components.attoseconds > 0 ? 1 : 0))
    }
    return .error(
      .conflict, "a profile is already running in this process; retry in \(remaining) s",
      headers: [("Retry-After", String(remaining))])
  }

  /// `GET /profile`: records, encodes, answers. Never throws: every outcome
  /// is a response, and the profiler's slot is free again when it returns.
  func profile(_ request: ProfileRequest) async -> HTTPResponse {
    if Profiler.shared.isBusy { return busyResponse() }
    runningUntil.withLock { $0 = ContinuousClock.now + request.duration }
    defer { runningUntil.withLock { $0 = nil } }
    do {
      let profile = try await Profiler.shared.record(
        mode: request.mode, duration: request.duration, interval: request.interval,
        options: configuration.sessionOptions)
      let name = "\(request.mode.rawValue)-\(getpid())-\(profile.startTimeNanoseconds / 1_000_000_000)"
      let body = SpeedscopeEncoder(name: "\(request.mode.rawValue) profile of pid \(getpid())").encode(profile)
      logger.info(
        "profile served",
        metadata: ["mode": "\(request.mode.rawValue)", "samples": "\(profile.totalCount)", "bytes": "\(body.count)"])
      return HTTPResponse(
        status: .ok,
        headers: [
          ("Content-Type", "application/json"),
          ("Content-Disposition", "inline; filename=\"\(name).speedscope.json\""),
        ], body: body)
    } catch {
      return response(for: error)
    }
  }

  /// `GET /threads`: one wall tick, as text or JSON.
  func threads(json: Bool) async -> HTTPResponse {
    if Profiler.shared.isBusy { return busyResponse() }
    do {
      let snapshot = try await Profiler.shared.threadSnapshot(options: configuration.sessionOptions)
      if json {
        return HTTPResponse(status: .ok, headers: [("Content-Type", "application/json")], body: ThreadDumpEncoder().json(snapshot))
      }
      return .text(ThreadDumpEncoder().text(snapshot))
    } catch {
      return response(for: error)
    }
  }

  private func response(for error: any Error) -> HTTPResponse {
    switch error {
    case ProfilerError.busy:
      return busyResponse()
    case ProfilerError.invalidParameter(let name, let value, let allowed)
    where name == "interval" || name == "duration":
      return .error(.badRequest, "invalid parameter \(name)='\(value)': allowed \(allowed)")
    case is CancellationError:
      // The client went away; nobody reads this.
      return .error(.serviceUnavailable, "cancelled")
    default:
      logger.error("profiling failed", metadata: ["error": "\(error)"])
      return .error(.serviceUnavailable, "this process cannot be profiled here: \(error)")
    }
  }

  /// `GET /`: what this server offers.
  func index() -> HTTPResponse {
    var lines = [
      "swift-app-profiler \(AppProfilerVersion.current) — pid \(getpid())",
      "profiler: \(Profiler.shared.isBusy ? "recording" : "idle")",
      "",
      "endpoints:",
    ]
    for route in Routes.all {
      lines.append("  \(route.path)  —  \(route.summary)")
      lines.append("      e.g. \(route.example)")
    }
    return .text(lines.joined(separator: "\n") + "\n")
  }
}
