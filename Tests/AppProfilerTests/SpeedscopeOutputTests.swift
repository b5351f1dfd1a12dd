import AppProfiler
import Foundation
import Testing

/// Runs a command (with `input` on its stdin), returns (exit status, stdout + stderr).
func runProcess(_ executable: String, _ arguments: [String], input: String? = nil) throws -> (Int32, String) {
  let process = Process()
  process.executableURL = URL(fileURLWithPath: executable)
  process.arguments = arguments
  let pipe = Pipe()
  process.standardOutput = pipe
  process.standardError = pipe
  let stdin = Pipe()
  if input != nil { process.standardInput = stdin }
  try process.run()
  if let input {
    stdin.fileHandleForWriting.write(Data(input.utf8))
    try stdin.fileHandleForWriting.close()
  }
  let data = pipe.fileHandleForReading.readDataToEndOfFile()
  process.waitUntilExit()
  return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

/// The repository root, from this file's path.
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
  .deletingLastPathComponent().deletingLastPathComponent()

extension SamplingSuite {
  /// Acceptance 7: speedscope output of real profiles passes the schema
  /// check and carries demangled names.
  @Suite struct SpeedscopeOutput {
    @Test(arguments: [Profile.Mode.cpu, .wall])
    func realProfileValidates(mode: Profile.Mode) async throws {
      let stop = StopFlag()
      let worker = TestThread(name: "chain") { alphaWorkload(stop) }
      let waiter = ConditionWaiter()
      _ = waiter.tid
      let profile = try await Profiler.shared.record(mode: mode, duration: .milliseconds(500), interval: .milliseconds(1))
      stop.set()
      worker.join()
      waiter.release()

      let bytes = SpeedscopeEncoder().encode(profile)
      let path = FileManager.default.temporaryDirectory
        .appendingPathComponent("app-profiler-test-\(getpid())-\(mode).speedscope.json").path
      try Data(bytes).write(to: URL(fileURLWithPath: path))
      defer { try? FileManager.default.removeItem(atPath: path) }
      let (status, output) = try runProcess(
        "/usr/bin/env", ["python3", repositoryRoot.appendingPathComponent("Tests/Support/validate_speedscope.py").path, path])
      #expect(status == 0, "validator: \(output)")

      let json = try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
      #expect(json["$schema"] as? String == "https://www.speedscope.app/file-format-schema.json")
      #expect(json["exporter"] as? String == "swift-app-profiler@\(AppProfilerVersion.current)")
      let frames = try #require((json["shared"] as? [String: Any])?["frames"] as? [[String: Any]])
      let names = frames.compactMap { $0["name"] as? String }
      #expect(names.contains { $0.contains("alphaWorkload(") })
      #expect(names.contains { $0.contains("gammaWorkload(") })
      #expect(!names.contains { $0.hasPrefix("$s") || $0.hasPrefix("_$s") }, "mangled names left")
      let profiles = try #require(json["profiles"] as? [[String: Any]])
      #expect(profiles.allSatisfy { $0["unit"] as? String == "nanoseconds" && $0["type"] as? String == "sampled" })
      if mode == .wall {
        #expect(names.contains("[idle]"))
      } else {
        // Busiest thread first: the chain worker.
        #expect((profiles.first?["name"] as? String)?.hasPrefix("chain") == true)
      }
    }
  }
}
