import Logging

#if OTLP
import AppProfilerOTLP
#endif
#if Pyroscope
import AppProfilerPyroscope
#endif

/// The push exporters a server starts from the environment alone, with the
/// package traits that build them: OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT`
/// (or `…_PROFILES_ENDPOINT`) is set, Pyroscope when
/// `APP_PROFILER_PYROSCOPE_URL` is. A service gets continuous profiling from
/// configuration, no line of code. An app that starts the same exporter
/// itself still pushes each window once: exporters of one destination share
/// one push per process (``AppProfilerExport/ProfilePusher/identity``).
struct EnvironmentExporters: Sendable {
  private var stops: [@Sendable () -> Void] = []

  static let none = EnvironmentExporters()

  /// Starts those the environment configures. A bad variable or a sampler
  /// that cannot start logs one error line; the server serves on.
  static func start(environment: [String: String], logger: Logger) -> EnvironmentExporters {
    var started = EnvironmentExporters()
    #if OTLP
    if let exporter = OTLPExporter.fromEnvironment(environment) {
      started.add("OTLP exporter", logger: logger, start: exporter.start, stop: exporter.stop)
    }
    #endif
    #if Pyroscope
    if let exporter = PyroscopeExporter.fromEnvironment(environment) {
      started.add("Pyroscope exporter", logger: logger, start: exporter.start, stop: exporter.stop)
    }
    #endif
    return started
  }

  private mutating func add(
    _ name: String, logger: Logger, start: () throws -> Void, stop: @escaping @Sendable () -> Void
  ) {
    do {
      try start()
      stops.append(stop)
    } catch {
      logger.error("app-profiler cannot start the \(name) its environment configures", metadata: ["error": "\(error)"])
    }
  }

  var isEmpty: Bool { stops.isEmpty }

  /// Sends each exporter's last window and stops them (blocking: off the
  /// cooperative pool).
  func stop() { stops.forEach { $0() } }
}
