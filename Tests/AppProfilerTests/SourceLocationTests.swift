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
      let profile = try await Profiler.shared.record(mode: .cpu, duration: .milliseconds(300), interval: .milliseconds(1))
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
      // Issue 22: our DWARF reader gives the toolchain symbolicator's frames
      // for every sampled address and a sweep of the optimized binary.
      let check = try #require(
        output.split(separator: "\n").first { $0.hasPrefix("check|") }?.split(separator: "|").dropFirst().compactMap { Int($0) },
        "\(output.suffix(2000))")
      try #require(check.count == 3)
      print("release fixture check: compared \(check[0]), inlined frames \(check[1]), mismatches \(check[2])")
      #expect(check[0] >= 300)
      #expect(check[1] > 0, "no inlined frames in the release fixture's sweep")
      // The toolchain drops or reorders inlined frames in optimized code;
      // where it differs from us, LLVM's own symbolizer decides.
      let mismatches = output.split(separator: "\n").filter { $0.hasPrefix("mismatch|") }
        .map { $0.split(separator: "|", omittingEmptySubsequences: false).map(String.init) }
      try #require(mismatches.count == check[2])
      let verdicts = try llvmSymbolizerAgrees(mismatches.map { ($0[1], $0[2], Array($0.dropFirst(3))) })
      print("release fixture: toolchain differs at \(check[2]) addresses; llvm-symbolizer agrees with ours at \(verdicts.agreed)")
      #expect(verdicts.disagreed.isEmpty, "\(verdicts.disagreed.prefix(10).joined(separator: "\n"))")
    }
  }
}

/// Where our DWARF reader and the toolchain's symbolicator differ, asks
/// LLVM's: for each (file, "0xADDRESS", our frames as "name^file^line",
/// innermost first), the same files and lines for every frame, the same
/// names for inlined ones (the outermost is named by its ELF symbol, as the
/// toolchain and perf do).
func llvmSymbolizerAgrees(_ mismatches: [(path: String, address: String, frames: [String])]) throws -> (agreed: Int, disagreed: [String]) {
  var agreed = 0
  var disagreed: [String] = []
  for (path, group) in Dictionary(grouping: mismatches, by: { $0.path }) {
    let input = group.map { $0.address }.joined(separator: "\n") + "\n"
    let (status, output) = try runProcess(
      "/usr/bin/env", ["llvm-symbolizer", "--obj=" + path, "--functions=linkage", "--inlining", "--output-style=LLVM"],
      input: input)
    try #require(status == 0, "llvm-symbolizer failed (CI installs the llvm package): \(output.prefix(500))")
    let blocks = output.components(separatedBy: "\n\n").map { $0.split(separator: "\n").map(String.init) }
      .filter { !$0.isEmpty }
    try #require(blocks.count == group.count, "\(output.prefix(2000))")
    for (mismatch, block) in zip(group, blocks) {
      let ours = mismatch.frames.map { $0.split(separator: "^", omittingEmptySubsequences: false).map(String.init) }
      var theirs: [(name: String, location: String)] = []
      for index in stride(from: 0, to: block.count - 1, by: 2) { theirs.append((block[index], block[index + 1])) }
      let same =
        ours.count == theirs.count
        && zip(ours, theirs).enumerated().allSatisfy { position, pair in
          let (mine, reference) = pair
          // "file:line:column"
          let location = reference.location.split(separator: ":").map(String.init)
          guard mine.count == 3, location.count >= 3 else { return false }
          let file = location.dropLast(2).joined(separator: ":")
          return file == mine[1] && location[location.count - 2] == mine[2]
            && (position == ours.count - 1 || reference.name == mine[0])
        }
      if same {
        agreed += 1
      } else {
        disagreed.append("\(mismatch.address): ours \(ours) llvm \(theirs)")
      }
    }
  }
  return (agreed, disagreed)
}
