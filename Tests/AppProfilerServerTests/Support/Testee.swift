import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A running AppProfilerTestee child: a workload plus a profile server.
final class Testee: @unchecked Sendable {
  let process = Process()
  private let input = Pipe()
  private let output = Pipe()
  private var buffered = ""
  /// The socket path or base URL printed after READY.
  private(set) var address = ""
  let directory: String

  var pid: Int32 { process.processIdentifier }
  var isUnix: Bool { address.hasPrefix("/") }

  static var executable: String {
    let testBinary =
      (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    return URL(fileURLWithPath: testBinary).deletingLastPathComponent().appendingPathComponent("AppProfilerTestee").path
  }

  /// Starts the child and waits for its first line. Throws `StartError`
  /// with the line when it printed ERROR.
  /// The child's stderr, when started with `captureStandardError`.
  private let errorPipe: Pipe?

  init(
    directory: String, arguments: [String] = [], environment: [String: String] = [:],
    captureStandardError: Bool = false
  ) throws {
    errorPipe = captureStandardError ? Pipe() : nil
    self.directory = directory
    process.executableURL = URL(fileURLWithPath: Self.executable)
    process.arguments = ["--dir", directory] + arguments
    var env = ProcessInfo.processInfo.environment
    for key in env.keys where key.hasPrefix("APP_PROFILER_") { env[key] = nil }
    for (key, value) in environment { env[key] = value }
    process.environment = env
    process.standardInput = input
    process.standardOutput = output
    if let errorPipe {
      process.standardError = errorPipe
    } else {
      process.standardError = FileHandle.standardError
    }
    try process.run()
    let line = try readLine(timeout: 30)
    if line.hasPrefix("READY ") {
      address = String(line.dropFirst(6))
    } else {
      throw StartError(message: line)
    }
  }

  struct StartError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
  }

  /// Next line of the child's stdout.
  func readLine(timeout: Double) throws -> String {
    let deadline = Date().addingTimeInterval(timeout)
    let handle = output.fileHandleForReading
    while true {
      if let newline = buffered.firstIndex(of: "\n") {
        let line = String(buffered[..<newline])
        buffered = String(buffered[buffered.index(after: newline)...])
        return line
      }
      guard Date() < deadline else { throw StartError(message: "timeout waiting for output; got '\(buffered)'") }
      var poller = pollfd(fd: handle.fileDescriptor, events: Int16(POLLIN), revents: 0)
      if poll(&poller, 1, 100) <= 0 {
        if !process.isRunning { throw StartError(message: "exited (\(process.terminationStatus)); output '\(buffered)'") }
        continue
      }
      let data = handle.availableData
      if data.isEmpty {
        if !process.isRunning { throw StartError(message: "exited (\(process.terminationStatus)); output '\(buffered)'") }
        usleep(10_000)
        continue
      }
      buffered += String(decoding: data, as: UTF8.self)
    }
  }

  /// Sends one command line (see the testee's header) and returns the first
  /// answer line that starts with `answer`.
  func command(_ line: String, answer: String, timeout: Double = 30) throws -> String {
    input.fileHandleForWriting.write(Data((line + "\n").utf8))
    let deadline = Date().addingTimeInterval(timeout)
    while true {
      let reply = try readLine(timeout: max(0.1, deadline.timeIntervalSinceNow))
      if reply.hasPrefix(answer) { return reply }
    }
  }

  /// True while the child has not exited (and is not a zombie).
  var isAlive: Bool {
    guard process.isRunning else { return false }
    let state = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8))?
      .split(separator: ")").last?.split(separator: " ").first
    return state != "Z" && state != "X"
  }

  /// Closes stdin, waits for the exit, and returns what the child wrote to
  /// stderr (needs `captureStandardError`).
  func finishCapturingStandardError() -> String {
    finish()
    guard let errorPipe else { return "" }
    return String(decoding: errorPipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
  }

  /// Closes stdin (the child stops its server and exits) and waits.
  @discardableResult
  func finish() -> Int32 {
    try? input.fileHandleForWriting.close()
    let deadline = Date().addingTimeInterval(15)
    while process.isRunning && Date() < deadline { usleep(10_000) }
    if process.isRunning {
      process.terminate()
      Self.waitBriefly(for: process)
    }
    return process.isRunning ? -1 : process.terminationStatus
  }

  deinit {
    if process.isRunning {
      process.terminate()
      Self.waitBriefly(for: process)
    }
  }

  /// Up to 10 s for a terminated child to be seen exiting. Not
  /// `waitUntilExit()`: in one fresh-clone run Foundation's `Process` never
  /// noticed a testee's exit (the child a zombie, `waitUntilExit` spinning
  /// its run loop for ever) and the suite hung in a test's teardown.
  private static func waitBriefly(for process: Process) {
    let deadline = Date().addingTimeInterval(10)
    while process.isRunning && Date() < deadline { usleep(10_000) }
  }

  // MARK: /proc views of the child

  func count(_ directory: String) -> Int {
    (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/\(directory)").count) ?? -1
  }

  /// A field of /proc/<pid>/status, e.g. "VmRSS" or "SigCgt".
  func status(_ field: String) -> String {
    let text = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
    for line in text.split(separator: "\n") where line.hasPrefix(field + ":") {
      return line.dropFirst(field.count + 1).trimmingCharacters(in: .whitespaces)
    }
    return ""
  }

  var threadNames: [String] {
    let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
    return tasks.compactMap {
      (try? String(contentsOfFile: "/proc/\(pid)/task/\($0)/comm", encoding: .utf8))?
        .trimmingCharacters(in: .whitespacesAndNewlines)
    }
  }
}

/// A private directory for one test's sockets and records.
struct TemporaryDirectory {
  let path: String

  init() {
    var template = Array("/tmp/apt-XXXXXX".utf8CString)
    let result = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
    path = String(cString: result!)
  }

  func remove() {
    try? FileManager.default.removeItem(atPath: path)
  }
}
