/// Errors of the profiler. Each message says what went wrong and, for bad
/// parameters, the allowed range.
public enum ProfilerError: Error, Sendable, Equatable, CustomStringConvertible {
  /// Another session is running in this process; only one can run at a time.
  case busy
  /// A parameter is outside its allowed range.
  case invalidParameter(name: String, value: String, allowed: String)
  /// The call does not apply in this state (e.g. stopping a session that
  /// was already stopped); the message says what.
  case unsupported(String)
  /// A system call failed.
  case system(operation: String, errno: Int32, message: String)

  public var description: String {
    switch self {
    case .busy:
      return "busy: a profiling session is already running in this process"
    case .invalidParameter(let name, let value, let allowed):
      return "invalid \(name) '\(value)': allowed \(allowed)"
    case .unsupported(let message):
      return "unsupported: \(message)"
    case .system(let operation, let errno, let message):
      return "\(operation) failed (errno \(errno)): \(message)"
    }
  }
}
