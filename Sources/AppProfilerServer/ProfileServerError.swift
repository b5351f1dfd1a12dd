/// Why the profile server could not start.
public enum ProfileServerError: Error, Sendable, Equatable, CustomStringConvertible {
  /// The socket/record directory is not safe to use.
  case unsafeDirectory(path: String, reason: String)
  /// A non-loopback address needs `allowRemoteAccess` and a bearer token.
  case remoteAccessRefused(host: String)
  /// Unix socket paths are limited to 107 bytes.
  case socketPathTooLong(path: String)
  /// This process already runs a profile server.
  case alreadyRunning
  /// Binding failed (address in use, permission, …).
  case bindFailed(address: String, reason: String)
  /// An `APP_PROFILER_*` variable is invalid.
  case invalidEnvironment(String)

  public var description: String {
    switch self {
    case .unsafeDirectory(let path, let reason): return "app-profiler directory \(path) \(reason)"
    case .remoteAccessRefused(let host):
      return "refusing to listen on non-loopback host \(host): set allowRemoteAccess (APP_PROFILER_ALLOW_REMOTE=1) and a bearer token (APP_PROFILER_TOKEN)"
    case .socketPathTooLong(let path): return "socket path too long (max 107 bytes): \(path)"
    case .alreadyRunning: return "a profile server is already running in this process"
    case .bindFailed(let address, let reason): return "cannot listen on \(address): \(reason)"
    case .invalidEnvironment(let message): return message
    }
  }
}
