#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

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

extension ProfilerError {
  /// Runs a C start function that answers 0 or a negative errno with a
  /// message: `.busy` for -EBUSY, `.system` with the message otherwise.
  static func check(operation: String, _ start: (UnsafeMutablePointer<CChar>, Int) -> Int32) throws {
    var message = [CChar](repeating: 0, count: 256)
    let result = message.withUnsafeMutableBufferPointer { start($0.baseAddress!, $0.count) }
    guard result != 0 else { return }
    if result == -EBUSY { throw ProfilerError.busy }
    throw ProfilerError.system(
      operation: operation, errno: -result,
      message: String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
  }
}
