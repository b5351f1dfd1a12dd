import ArgumentParser
import Foundation

/// A failure the CLI reports as one line on stderr and an exit code.
///
/// | code | meaning |
/// |---|---|
/// | 0 | success |
/// | 1 | unexpected failure (I/O, malformed answer) |
/// | 2 | the target cannot be profiled: no such process, no profile server, not an app-profiler socket, permission denied |
/// | 3 | the server is busy with another profile (409) |
/// | 4 | the server rejected a parameter (400) |
/// | 64 | bad command line |
/// | 130 | interrupted (Ctrl-C); the server stopped its session |
struct CLIError: Error, CustomStringConvertible {
  var message: String
  var exitCode: Int32

  var description: String { message }

  static func target(_ message: String) -> CLIError { CLIError(message: message, exitCode: 2) }
  static func failure(_ message: String) -> CLIError { CLIError(message: message, exitCode: 1) }
  static func busy(_ message: String) -> CLIError { CLIError(message: message, exitCode: 3) }
  static func rejected(_ message: String) -> CLIError { CLIError(message: message, exitCode: 4) }
  static func usage(_ message: String) -> CLIError { CLIError(message: message, exitCode: 64) }
  static let interrupted = CLIError(message: "interrupted; the server stops its session", exitCode: 130)
}

/// Runs a command body, turning CLIError into "app-profiler: message" + exit code.
func reportingErrors(_ body: () async throws -> Void) async throws {
  do {
    try await body()
  } catch let error as CLIError {
    FileHandle.standardError.write(Data("app-profiler: \(error.message)\n".utf8))
    throw ExitCode(error.exitCode)
  }
}
