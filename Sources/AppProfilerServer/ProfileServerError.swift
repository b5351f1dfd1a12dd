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

  /// What the operator can do about it, for the log line.
  public var fix: String {
    switch self {
    case .unsafeDirectory(let path, let reason):
      if reason.contains("symbolic link") {
        return "point APP_PROFILER_DIR (or configuration.directory) at a real directory, not a link"
      }
      if reason.contains("accessible to other users") {
        return "run `chmod 700 \(path)`, or set APP_PROFILER_DIR to a directory only this user can open"
      }
      return "set APP_PROFILER_DIR (or configuration.directory) to a directory owned by this user with mode 0700"
    case .remoteAccessRefused:
      return "listen on 127.0.0.1 or ::1, or opt in with APP_PROFILER_ALLOW_REMOTE=1 and APP_PROFILER_TOKEN"
    case .socketPathTooLong:
      return "set APP_PROFILER_DIR to a shorter directory (e.g. /tmp/app_profiler) or APP_PROFILER_SOCKET to a shorter path"
    case .alreadyRunning:
      return "start one ProfileServer per process and reuse it"
    case .bindFailed:
      return "choose another address (APP_PROFILER_PORT=0 picks a free port) or remove what holds it"
    case .invalidEnvironment:
      return "correct or unset the variable; docs/configuration.md lists the allowed values"
    }
  }
}
