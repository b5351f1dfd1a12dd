import AppProfilerServer
import Foundation

/// Turns `<pid | socket path | URL>` into an endpoint.
enum TargetResolver {
  /// The servers' default directory (the same rule the server applies).
  static func defaultDirectory() -> String {
    ProfileServerConfiguration.defaultDirectory(environment: ProcessInfo.processInfo.environment)
  }

  static func resolve(_ target: String, directory: String?, token: String?) throws(CLIError) -> Endpoint {
    let token = token ?? ProcessInfo.processInfo.environment["APP_PROFILER_TOKEN"]
    if let pid = Int32(target) {
      guard pid > 0, kill(pid, 0) == 0 || errno == EPERM else { throw .target("no process with pid \(pid)") }
      let directory = directory ?? defaultDirectory()
      guard let record = DiscoveryRecord.all(in: directory).compactMap(\.record).first(where: { $0.pid == pid }),
        record.isAlive
      else {
        throw .target(
          "process \(pid) has no profile server (no record in \(directory)); start one with ProfileServer.start() or set APP_PROFILER_DIR")
      }
      if record.transport == "unix" { return Endpoint(kind: .unix(path: record.address), token: token, pid: pid) }
      let parts = record.address.split(separator: ":")
      guard let port = parts.last.flatMap({ Int($0) }) else { throw .target("record of \(pid) has no usable address: \(record.address)") }
      return Endpoint(kind: .tcp(host: parts.dropLast().joined(separator: ":"), port: port), token: token, pid: pid)
    }
    if target.hasPrefix("http://") {
      guard let url = URL(string: target), let host = url.host else { throw .target("not a URL: \(target)") }
      return Endpoint(kind: .tcp(host: host, port: url.port ?? 80), token: token)
    }
    if target.hasPrefix("https://") {
      throw .target("https is not supported: the profile server speaks plain HTTP on loopback or a Unix socket")
    }
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: target, isDirectory: &isDirectory), !isDirectory.boolValue else {
      throw .target("no such pid, socket or URL: \(target)")
    }
    return Endpoint(kind: .unix(path: target), token: token, pid: Endpoint.pid(ofSocket: target))
  }

  /// A failed answer as a CLIError (409 busy, 400 rejected, …).
  static func check(_ answer: HTTPAnswer) throws(CLIError) {
    switch answer.status {
    case 200..<300: return
    case 409:
      let wait = answer.headers["retry-after"] ?? "a few"
      throw .busy("the process is already being profiled; retry in \(wait) s")
    case 400: throw .rejected(answer.text)
    case 401: throw .target("the server requires a bearer token (--token or APP_PROFILER_TOKEN): \(answer.text)")
    default: throw .failure("the server answered \(answer.status): \(answer.text)")
    }
  }
}
