/// The library's version, written into every profile (`exporter`, metadata)
/// and the discovery records.
public enum AppProfilerVersion {
  public static let current = "0.1.0"
  /// `swift-app-profiler@<version>`, the speedscope `exporter` value.
  public static let exporter = "swift-app-profiler@\(current)"
}
