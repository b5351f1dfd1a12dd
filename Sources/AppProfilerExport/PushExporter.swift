@_spi(Support) import AppProfiler
import Logging
import ServiceLifecycle

/// What every push exporter (OTLP, Pyroscope) is to a service: `start`
/// starts its sessions and pushes, `stop` sends the last window. As a
/// swift-service-lifecycle `Service` it runs until graceful shutdown.
public protocol PushExporter: Service, Sendable {
  /// Starts sampling and pushing. Throws what starting the sessions throws
  /// (``AppProfiler/ProfilerError``); nothing is left running then.
  func start() throws
  /// Sends the last window and stops (blocking: call it off the cooperative pool).
  func stop()
}

extension PushExporter {
  /// Runs until graceful shutdown, then sends the last window and stops.
  public func run() async throws {
    try start()
    try? await gracefulShutdown()
    await ProfilerThread.runOffThePool { [self] in stop() }
  }

  /// An exporter from the configuration `read` finds in the environment;
  /// nil when it finds none — or when a variable is invalid: then `logger`
  /// says so once (`failure: error`) and the app runs on without it.
  public static func fromEnvironment<Configuration>(
    reading read: () throws -> Configuration?, logger: Logger, failure: String,
    make: (Configuration) -> Self
  ) -> Self? {
    do {
      guard let configuration = try read() else { return nil }
      return make(configuration)
    } catch {
      logger.error("\(failure): \(error)")
      return nil
    }
  }
}
