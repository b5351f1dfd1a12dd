/// Errors of the profiler. Each message says what went wrong and, for bad
/// parameters, the allowed range.
public enum ProfilerError: Error, Sendable, Equatable, CustomStringConvertible {
  /// Sampling of the same mode with another interval or options is running
  /// in this process, or 16 sessions already share the running sampler.
  case busy
  /// A parameter is outside its allowed range.
  case invalidParameter(name: String, value: String, allowed: String)
  /// The call does not apply in this state (e.g. stopping a session that
  /// was already stopped); the message says what.
  case unsupported(String)
  /// A system call failed.
  case system(operation: String, errno: Int32, message: String)
  /// This build has no sampler: a platform other than Linux, or a Linux
  /// build with `APP_PROFILER_NO_SAMPLER`. Nothing is sampled; everything
  /// else (the server, the formats) works.
  case unsupportedPlatform

  public var description: String {
    switch self {
    case .busy:
      return "busy: a profiling session of this mode with other sampling (interval, options) is already running in this process"
    case .invalidParameter(let name, let value, let allowed):
      return "invalid \(name) '\(value)': allowed \(allowed)"
    case .unsupported(let message):
      return "unsupported: \(message)"
    case .system(let operation, let errno, let message):
      return "\(operation) failed (errno \(errno)): \(message)"
    case .unsupportedPlatform:
      return "unsupported platform: this build of app-profiler has no sampler (Linux only; APP_PROFILER_NO_SAMPLER)"
    }
  }
}
