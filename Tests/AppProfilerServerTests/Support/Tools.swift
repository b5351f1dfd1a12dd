import Foundation

/// Runs a command line tool; returns (exit status, stdout, stderr).
func run(_ executable: String, _ arguments: [String], environment: [String: String] = [:], timeout: Double = 120) throws -> (
  status: Int32, output: String, error: String
) {
  let process = Process()
  process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
  process.arguments = [executable] + arguments
  var env = ProcessInfo.processInfo.environment
  for (key, value) in environment { env[key] = value }
  process.environment = env
  let out = Pipe()
  let err = Pipe()
  process.standardOutput = out
  process.standardError = err
  try process.run()
  // Read both pipes concurrently so neither fills up.
  // The semaphore orders the reader's write before our read (polling
  // `isFinished` does not, as ThreadSanitizer pointed out).
  nonisolated(unsafe) var errorData = Data()
  let readerDone = DispatchSemaphore(value: 0)
  let reader = Thread {
    errorData = err.fileHandleForReading.readDataToEndOfFile()
    readerDone.signal()
  }
  reader.start()
  let outputData = out.fileHandleForReading.readDataToEndOfFile()
  process.waitUntilExit()
  readerDone.wait()
  return (process.terminationStatus, String(decoding: outputData, as: UTF8.self), String(decoding: errorData, as: UTF8.self))
}

/// `go tool pprof ARGS`, with its cache in a private directory (no files
/// left in $HOME).
func goPprof(_ arguments: [String], scratch: String) throws -> (status: Int32, output: String, error: String) {
  try run("go", ["tool", "pprof"] + arguments, environment: ["PPROF_TMPDIR": scratch, "HOME": scratch, "GOCACHE": scratch + "/gocache"])
}

/// Headless Chromium: the rendered DOM and the console output.
func chromiumDump(_ url: String, scratch: String, budgetMilliseconds: Int? = nil) throws -> (dom: String, console: String) {
  var arguments = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--user-data-dir=\(scratch)/chromium",
    "--enable-logging=stderr", "--v=0",
  ]
  if let budgetMilliseconds { arguments.append("--virtual-time-budget=\(budgetMilliseconds)") }
  arguments += ["--dump-dom", url]
  let result = try run("chromium", arguments, environment: ["HOME": scratch])
  return (result.output, result.error)
}

/// Console errors Chromium reported (uncaught exceptions, console.error).
func consoleErrors(_ console: String) -> [String] {
  console.split(separator: "\n").map(String.init).filter { $0.contains("Uncaught") || $0.contains(":ERROR:CONSOLE") }
}

/// Screenshots for humans to look at: `.build/test-artifacts/`.
func artifactDirectory() -> String {
  let path = repositoryRoot + "/.build/test-artifacts"
  try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
  return path
}

/// The build folder of the builds the tests start themselves (the example
/// packages, the build without sampler): one folder, so what they share is
/// compiled once. Nested builds run one at a time (the suites are serial).
let nestedBuildFolder = repositoryRoot + "/.build-nested"

let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
  .deletingLastPathComponent().deletingLastPathComponent().path

/// True when this test process runs under ThreadSanitizer (`swift test
/// --sanitize=thread`). The few tests that cannot hold there say why in
/// their `.disabled(if:)` reason; BENCHMARKS.md (Sanitizers) lists them.
let underThreadSanitizer = dlsym(nil, "__tsan_init") != nil

/// ThreadSanitizer or AddressSanitizer: the server runs 2–20× slower, past
/// the time bounds of a few tests.
let underSlowSanitizer = underThreadSanitizer || dlsym(nil, "__asan_init") != nil
