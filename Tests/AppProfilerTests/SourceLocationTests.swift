import AppProfiler
import Foundation
import Testing

/// The line of `marker` in a source file of this repository (1-based).
func lineNumber(of marker: String, in relativePath: String) throws -> Int {
  let text = try String(contentsOfFile: repositoryRoot.appendingPathComponent(relativePath).path, encoding: .utf8)
  let lines = text.components(separatedBy: "\n")
  let index = try #require(lines.firstIndex { $0.contains(marker) }, "\(marker) not in \(relativePath)")
  return index + 1
}

extension SamplingSuite {
  /// Issue 3: file and line for frames, inline frames expanded.
  @Suite struct SourceLocations {
    @Test func debugBuildHasFileAndLine() async throws {
      let stop = StopFlag()
      let worker = TestThread(name: "chain") { alphaWorkload(stop) }
      _ = worker.waitForTID()
      let profile = try await Profiler.shared.record(mode: .cpu, duration: .milliseconds(300))
      stop.set()
      worker.join()
      // betaWorkload's frame is at its call of gammaWorkload.
      let expected = try lineNumber(of: "  gammaWorkload(stop)", in: "Tests/AppProfilerTests/Workloads.swift")
      let lines = profile.locations.flatMap { $0.lines }.filter { profile.functions[$0.function].name.contains("betaWorkload") }
      try #require(!lines.isEmpty)
      for line in lines {
        #expect(profile.functions[line.function].file.hasSuffix("Tests/AppProfilerTests/Workloads.swift"))
        #expect(abs(line.line - expected) <= 1, "betaWorkload at line \(line.line), call site \(expected)")
      }
    }

    /// A release build with -g of a small fixture: lines and an inlined frame.
    @Test(.timeLimit(.minutes(10))) func releaseBuildHasLinesAndInlinedFrames() throws {
      let scratch = repositoryRoot.appendingPathComponent(".build-symbols-fixture").path
      let build = try runProcess(
        "/usr/bin/env",
        ["swift", "build", "--package-path", repositoryRoot.path, "--scratch-path", scratch, "-c", "release",
         "-Xswiftc", "-g", "--product", "AppProfilerSymbolsFixture"])
      #expect(build.0 == 0, "release build failed: \(build.1.suffix(2000))")
      guard build.0 == 0 else { return }
      let (status, output) = try runProcess(scratch + "/release/AppProfilerSymbolsFixture", [])
      #expect(status == 0, "\(output)")
      let frames = output.split(separator: "\n").map { $0.split(separator: "|", omittingEmptySubsequences: false).map(String.init) }
        .filter { $0.count == 4 }
      let file = "Tests/Fixtures/SymbolsFixture/main.swift"
      let inlinedLine = try lineNumber(of: "FIXTURE-INLINED-LINE", in: file)
      let callLine = try lineNumber(of: "FIXTURE-CALL-LINE", in: file)
      print("release fixture frames:", frames.prefix(8))
      let inlined = frames.filter { $0[0].contains("fixtureInlinedStep") }
      #expect(!inlined.isEmpty, "the inlined helper never shows: \(frames)")
      #expect(inlined.allSatisfy { $0[3] == "true" }, "fixtureInlinedStep should be marked inlined")
      #expect(inlined.contains { $0[1].hasSuffix(file) && abs((Int($0[2]) ?? 0) - inlinedLine) <= 1 }, "\(inlined)")
      // The outer function's line for those samples: the call site of the helper.
      let outer = frames.filter { $0[0].contains("fixtureOuterLoop") && $0[3] == "false" }
      #expect(outer.contains { $0[1].hasSuffix(file) && abs((Int($0[2]) ?? 0) - callLine) <= 1 }, "\(outer)")
    }
  }
}
