/// Errors of the profiler. Each message says what went wrong and, for bad
/// parameters, the allowed range.
public enum ProfilerError: Error, Sendable, Equatable, CustomStringConvertible {
  /// Another session is running in this process; only one can run at a time.
  case busy
  /// A parameter is outside its allowed range.
  case invalidParameter(name: String, value: String, allowed: String)
  /// The platform or the process cannot do what was asked (e.g. alloc mode
  /// before it exists, a signal that cannot be used).
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
