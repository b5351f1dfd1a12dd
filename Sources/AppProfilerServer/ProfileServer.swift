@_spi(Support) import AppProfiler
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle
import Synchronization

/// The profiling back door: a small HTTP/1.1 server, on a Unix socket by
/// default, that records profiles of this process on request.
///
/// ```swift
/// let server = try await ProfileServer.start()     // APP_PROFILER_* variables apply
/// // … the process runs …
/// await server.stop()
/// ```
///
/// or as a swift-service-lifecycle `Service` (Hummingbird and Vapor apps run it
/// next to their HTTP server):
///
/// ```swift
/// let group = ServiceGroup(services: [app, ProfileServer()], logger: logger)
/// ```
///
/// While no request runs, the server costs one event-loop thread waiting in
/// `epoll_wait`: no sampling thread, no timer, no signal handler.
public final class ProfileServer: Service, Sendable {
  /// Where a running server listens.
  public struct ListeningAddress: Sendable, Hashable, CustomStringConvertible {
    /// `unix` or `tcp`.
    public var transport: String
    /// The socket path (unix).
    public var socketPath: String?
    /// Host and port (tcp).
    public var host: String?
    public var port: Int?

    /// A base URL: `http://127.0.0.1:PORT`, or `http://localhost` to use
    /// with the socket path (`curl --unix-socket PATH http://localhost/profile`).
    public var url: String {
      if let host, let port { return "http://\(host.contains(":") ? "[\(host)]" : host):\(port)" }
      return "http://localhost"
    }

    public var description: String {
      if let socketPath { return "unix:\(socketPath)" }
      return url
    }
  }

  public let configuration: ProfileServerConfiguration
  /// ``configuration`` with the `APP_PROFILER_*` variables applied (the
  /// configuration itself when they are invalid; starting then fails).
  public let effectiveConfiguration: ProfileServerConfiguration
  private let logger: Logger
  private let state = Mutex<State>(.idle)
  private let environment: [String: String]

  private enum State: @unchecked Sendable {
    case idle
    case disabled
    case running(Running)
    case stopped
  }

  private struct Running: @unchecked Sendable {
    var group: MultiThreadedEventLoopGroup
    var channel: any Channel
    var address: ListeningAddress
    var files: [String]
    /// This server turned continuous allocation sampling on (and turns it off).
    var ownsContinuousAllocationSampling = false
    /// This server turned continuous lock sampling on (and turns it off).
    var ownsContinuousLockSampling = false
    /// This server started the flight recorder (and stops it).
    var ownsFlightRecorder = false
    /// Push exporters this server started from the environment (and stops).
    var exporters = EnvironmentExporters.none
  }

  /// Processes that run a server now; at most one per process.
  private static let runningInProcess = Mutex<pid_t?>(nil)

  /// A server that listens once ``run()`` or ``startListening()`` is called.
  /// `APP_PROFILER_*` environment variables override `configuration`.
  public init(
    configuration: ProfileServerConfiguration = ProfileServerConfiguration(),
    environment: [String: String] = ProcessInfo.processInfo.environment,
    logger: Logger = Logger(label: "app-profiler")
  ) {
    self.configuration = configuration
    self.effectiveConfiguration = (try? configuration.applyingEnvironment(environment)) ?? configuration
    self.environment = environment
    self.logger = logger
  }

  /// Starts a server and returns once it listens (or is disabled by
  /// `APP_PROFILER_ENABLED=0`).
  public static func start(
    configuration: ProfileServerConfiguration = ProfileServerConfiguration(),
    environment: [String: String] = ProcessInfo.processInfo.environment,
    logger: Logger = Logger(label: "app-profiler")
  ) async throws -> ProfileServer {
    let server = ProfileServer(configuration: configuration, environment: environment, logger: logger)
    try await server.startListening()
    return server
  }

  /// The address while listening; nil before, after stop, or when disabled.
  public var address: ListeningAddress? {
    state.withLock { state in
      if case .running(let running) = state { return running.address }
      return nil
    }
  }

  /// Binds, writes the discovery record, logs the address.
  ///
  /// With ``ProfileServerConfiguration/failureMode`` `.log` (the default) it
  /// never throws: a server that cannot start logs one error line naming the
  /// problem and the fix, and the app runs on without it (``address`` is nil).
  /// With `.throw` it throws the ``ProfileServerError``.
  public func startListening() async throws {
    let mode = ((try? configuration.applyingEnvironment(environment)) ?? configuration).failureMode
    do {
      try await listen()
    } catch {
      if mode == .throw { throw error }
      state.withLock { $0 = .disabled }
      let fix = (error as? ProfileServerError)?.fix ?? "see docs/configuration.md"
      logger.error("app-profiler server not started: \(error); to fix: \(fix). The app runs on without it.")
    }
  }

  private func listen() async throws {
    let effective: ProfileServerConfiguration
    do {
      effective = try configuration.applyingEnvironment(environment)
    } catch {
      throw ProfileServerError.invalidEnvironment(String(describing: error))
    }
    guard effective.enabled else {
      state.withLock { $0 = .disabled }
      logger.info("app-profiler server disabled (APP_PROFILER_ENABLED)")
      return
    }
    let claimed = Self.runningInProcess.withLock { owner -> Bool in
      if owner == getpid() { return false }
      owner = getpid()  // a pid from before fork() does not count
      return true
    }
    guard claimed else { throw ProfileServerError.alreadyRunning }
    do {
      var running = try await bind(effective)
      // Always-on samplers this server starts (and stops). A failure leaves
      // the server serving; their endpoints say what is off.
      if effective.continuousAllocationSampling && Profiler.shared.continuousAllocationSamplingRate == nil {
        running.ownsContinuousAllocationSampling = startAlwaysOn(
          "allocation sampling", ["rate_bytes": "\(effective.sessionOptions.allocationSamplingRate)"]
        ) {
          try Profiler.shared.enableContinuousAllocationSampling(
            rate: effective.sessionOptions.allocationSamplingRate, options: effective.sessionOptions)
        }
      }
      if effective.continuousLockSampling && Profiler.shared.continuousLockSamplingRate == nil {
        running.ownsContinuousLockSampling = startAlwaysOn(
          "lock contention sampling", ["rate": "\(effective.sessionOptions.lockSamplingRate)"]
        ) {
          try Profiler.shared.enableContinuousLockSampling(
            rate: effective.sessionOptions.lockSamplingRate, options: effective.sessionOptions)
        }
      }
      if let seconds = effective.flightRecorderSeconds, !FlightRecorder.shared.isRunning {
        // With slow-request profiles, its wall ring counts tasks off
        // threads too: a slow request's awaits are in its wall profile.
        var options = effective.sessionOptions
        options.includesSuspendedTasks = effective.requestProfiling.slowRequestThreshold != nil
        running.ownsFlightRecorder = startAlwaysOn("flight recorder", ["seconds": "\(seconds)"]) {
          try FlightRecorder.shared.start(seconds: seconds, options: options)
        }
      }
      running.exporters = EnvironmentExporters.start(environment: environment, logger: logger)
      // The task dump's layout check parks a probe task once: now, while
      // the pool is healthy, not when a stuck app is asked for its tasks.
      Profiler.shared.prepareTaskDump()
      state.withLock { $0 = .running(running) }
      logger.info(
        "app-profiler listening", metadata: ["address": "\(running.address)", "pid": "\(getpid())"])
    } catch {
      Self.runningInProcess.withLock { $0 = nil }
      throw error
    }
  }

  /// Stops listening, removes the socket and the discovery record.
  public func stop() async {
    let running = state.withLock { state -> Running? in
      guard case .running(let running) = state else { return nil }
      state = .stopped
      return running
    }
    guard let running else { return }
    try? await running.channel.close()
    _ = try? await running.group.next().submit { ProfilerThreads.unregisterCurrent() }.get()
    try? await running.group.shutdownGracefully()
    for file in running.files { unlink(file) }
    ExitCleanup.unregister(paths: running.files)
    if running.ownsContinuousAllocationSampling { Profiler.shared.disableContinuousAllocationSampling() }
    if running.ownsContinuousLockSampling { Profiler.shared.disableContinuousLockSampling() }
    if running.ownsFlightRecorder { FlightRecorder.shared.stop() }
    if !running.exporters.isEmpty { await ProfilerThread.runOffThePool { running.exporters.stop() } }
    Self.runningInProcess.withLock { $0 = nil }
    logger.info("app-profiler stopped")
  }

  /// Starts an always-on sampler, logging the outcome; true when it runs.
  private func startAlwaysOn(_ name: String, _ metadata: Logger.Metadata, _ start: () throws -> Void) -> Bool {
    do {
      try start()
      logger.info("app-profiler \(name) on", metadata: metadata)
      return true
    } catch {
      logger.error("app-profiler cannot start \(name)", metadata: ["error": "\(error)"])
      return false
    }
  }

  /// `Service`: listens until graceful shutdown or cancellation, then stops.
  public func run() async throws {
    if case .idle = state.withLock({ $0 }) {
      try await startListening()
    }
    try? await gracefulShutdown()
    await stop()
  }

  // MARK: Binding

  private func bind(_ configuration: ProfileServerConfiguration) async throws -> Running {
    let directory = configuration.resolvedDirectory(environment: environment)
    try RuntimeDirectory.prepare(directory)
    for removed in DiscoveryRecord.removeStale(in: directory) {
      logger.debug("removed stale discovery record", metadata: ["path": "\(removed)"])
    }
    let coordinator = ProfileCoordinator(configuration: configuration, logger: logger)
    // RequestHeadLimiter checks the head first, limit by limit; the decoder's
    // own limits stay, a little wider, as a backstop.
    var limits = NIOHTTPDecoderLimitConfiguration()
    limits.maxHeaderFieldSize = configuration.maxRequestHeadBytes + 1024
    limits.maxHeaderListSize = configuration.maxRequestHeadBytes + 1024
    limits.maxHeaderFieldCount = ProfileServerHandler.maxHeaderFields + 8
    let decoderLimits = limits
    let maxHeadBytes = configuration.maxRequestHeadBytes
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    // The server's loop is the profiler's own: left out of the app's profiles,
    // its allocations (symbol lookups, answers) not sampled.
    _ = try? await group.next().submit { ProfilerThreads.registerCurrentIgnoringAllocations() }.get()
    let bootstrap = ServerBootstrap(group: group)
      .serverChannelOption(.backlog, value: 32)
      .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
      .childChannelInitializer { channel in
        guard coordinator.admitConnection() else {
          return channel.close()
        }
        channel.closeFuture.whenComplete { _ in coordinator.releaseConnection() }
        return channel.eventLoop.makeCompletedFuture {
          try channel.pipeline.syncOperations.addHandler(
            RequestHeadLimiter(
              maxRequestLine: ProfileServerHandler.maxRequestLine, maxHeaderFields: ProfileServerHandler.maxHeaderFields,
              maxHeadBytes: maxHeadBytes))
          try channel.pipeline.syncOperations.addHandler(
            ByteToMessageHandler(
              HTTPRequestDecoder(leftOverBytesStrategy: .dropBytes, informationalResponseStrategy: .drop, limitConfiguration: decoderLimits)))
          try channel.pipeline.syncOperations.addHandler(HTTPResponseEncoder())
          try channel.pipeline.syncOperations.addHandler(ProfileServerHandler(coordinator: coordinator))
        }
      }

    let pid = getpid()
    var address: ListeningAddress
    let channel: any Channel
    var files: [String] = []
    do {
      switch configuration.bindAddress.kind {
      case .unixDomainSocket(let explicitPath):
        let path = explicitPath ?? "\(directory)/app-profiler-\(pid).sock"
        guard path.utf8.count <= 107 else { throw ProfileServerError.socketPathTooLong(path: path) }
        channel = try await bootstrap.bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true).get()
        chmod(path, 0o600)
        files.append(path)
        address = ListeningAddress(transport: "unix", socketPath: path, host: nil, port: nil)
      case .hostname(let host, let port):
        guard configuration.bindAddress.isLoopback || (configuration.allowRemoteAccess && configuration.bearerToken != nil) else {
          throw ProfileServerError.remoteAccessRefused(host: host)
        }
        channel = try await bootstrap.bind(host: host, port: port).get()
        address = ListeningAddress(transport: "tcp", socketPath: nil, host: host, port: channel.localAddress?.port ?? port)
      }
    } catch let error as ProfileServerError {
      try? await group.shutdownGracefully()
      throw error
    } catch {
      try? await group.shutdownGracefully()
      throw ProfileServerError.bindFailed(address: configuration.bindAddress.description, reason: "\(error)")
    }

    let recordPath = DiscoveryRecord.path(directory: directory, pid: pid)
    let record = DiscoveryRecord(
      pid: pid, processStartTicks: ProcessIdentity.startTicks(of: pid), transport: address.transport,
      address: address.socketPath ?? "\(address.host!):\(address.port!)", url: address.url,
      executable: ImageMapPath.executable(), arguments: CommandLine.arguments,
      startTime: DiscoveryRecord.utcTimestamp(time(nil)), version: AppProfilerVersion.current)
    do {
      try record.write(to: recordPath)
      files.append(recordPath)
    } catch {
      logger.warning("cannot write discovery record", metadata: ["path": "\(recordPath)", "error": "\(error)"])
    }
    ExitCleanup.register(paths: files)
    return Running(group: group, channel: channel, address: address, files: files)
  }
}

/// The executable's path, for the discovery record.
enum ImageMapPath {
  static func executable() -> String {
    (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments.first ?? ""
  }
}
