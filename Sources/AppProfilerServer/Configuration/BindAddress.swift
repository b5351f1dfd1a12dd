/// Where the profile server listens.
///
/// An opaque struct over an internal enum, so new kinds of address can be
/// added without breaking callers.
///
/// ```swift
/// .unixDomainSocket()                       // <dir>/app-profiler-<pid>.sock (default)
/// .unixDomainSocket(path: "/run/app/profiler.sock")
/// .hostname("127.0.0.1", port: 0)           // loopback, ephemeral port
/// ```
public struct BindAddress: Sendable, Hashable, CustomStringConvertible {
  enum Kind: Sendable, Hashable {
    case unixDomainSocket(path: String?)
    case hostname(String, port: Int)
  }

  let kind: Kind

  /// A Unix domain socket; `nil` means `<directory>/app-profiler-<pid>.sock`.
  public static func unixDomainSocket(path: String? = nil) -> BindAddress {
    BindAddress(kind: .unixDomainSocket(path: path))
  }

  /// A TCP address. Only loopback (`127.0.0.1`, `::1`, `localhost`) is
  /// accepted unless the configuration opts in to remote access *and* sets a
  /// bearer token. Port 0 picks a free port.
  public static func hostname(_ host: String = "127.0.0.1", port: Int = 0) -> BindAddress {
    BindAddress(kind: .hostname(host, port: port))
  }

  /// True for loopback hosts.
  var isLoopback: Bool {
    switch kind {
    case .unixDomainSocket: return true
    case .hostname(let host, _):
      return host == "127.0.0.1" || host == "::1" || host == "localhost" || host.hasPrefix("127.")
    }
  }

  public var description: String {
    switch kind {
    case .unixDomainSocket(let path): return "unix:\(path ?? "<default>")"
    case .hostname(let host, let port): return "\(host):\(port)"
    }
  }
}
