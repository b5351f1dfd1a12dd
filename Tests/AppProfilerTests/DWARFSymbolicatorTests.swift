import Foundation
import Testing

@_spi(Testing) @testable import AppProfiler

/// Our DWARF reader (issue 22) against the toolchain's symbolicator. The
/// release fixture with inlined code is compared in
/// `SourceLocations.releaseBuildHasLinesAndInlinedFrames`.
extension SamplingSuite {
  @Suite struct DWARFSymbolicatorTests {
    /// 2,000 addresses spread over this debug test binary (the library, NIO,
    /// the tests, C with DWARF 5, Swift with DWARF 4, macro expansions).
    @Test func sameFramesAsTheToolchainAcrossTheTestBinary() throws {
      let result = SymbolicationCheck.compareWithToolchain(
        SymbolicationCheck.sweepOfExecutable(count: 2000))
      print(
        "compared \(result.compared), outside functions \(result.outsideFunctions), inlined frames \(result.inlinedFrames), mismatches \(result.mismatches.count)"
      )
      for mismatch in result.mismatches.prefix(10) { print(mismatch.description) }
      #expect(result.compared >= 1000)
      try expectLLVMAgrees(result)
    }

    /// Every address of a cpu profile of the workloads (their return addresses).
    @Test func sameFramesForSampledAddresses() async throws {
      let stop = StopFlag()
      let worker = TestThread(name: "chain") { alphaWorkload(stop) }
      _ = worker.waitForTID()
      let profile = try await Profiler.shared.record(
        mode: .cpu, duration: .milliseconds(300), interval: .milliseconds(1))
      stop.set()
      worker.join()
      let addresses = Set(profile.locations.map(\.address)).filter { $0 != 0 }
      let result = SymbolicationCheck.compareWithToolchain(Array(addresses))
      print("compared \(result.compared), mismatches \(result.mismatches.count)")
      for mismatch in result.mismatches.prefix(10) { print(mismatch.description) }
      #expect(result.compared >= 10)
      try expectLLVMAgrees(result)
    }

    /// The parsed tables stay within the budget: units used least recently
    /// are dropped (and parsed again when met), with the same answers.
    @Test func tablesStayWithinTheBudget() {
      let images = ImageMap.current()
      let addresses = SymbolicationCheck.sweepOfExecutable(count: 400)
      let unbounded = DWARFSourceSymbolicator(budget: 1 << 30, fallback: NoSourceFrames())
      let reference = unbounded.sourceFrames(for: addresses, images: images, deadline: nil)
      let budget = 4 << 20
      let bounded = DWARFSourceSymbolicator(budget: budget, fallback: NoSourceFrames())
      var answers: [[SourceFrame]?] = []
      for start in stride(from: 0, to: addresses.count, by: 20) {
        answers += bounded.sourceFrames(
          for: Array(addresses[start..<min(start + 20, addresses.count)]), images: images, deadline: nil)
        #expect(bounded.footprint <= budget, "\(bounded.footprint) bytes held")
      }
      print("tables: \(unbounded.footprint) bytes unbounded, \(bounded.footprint) within \(budget)")
      #expect(unbounded.footprint > budget, "the sweep should need more than the budget")
      // Units were dropped, the image kept (its unit index is far below the budget).
      #expect(bounded.footprint > 0)
      #expect(answers == reference)
    }

    /// Where the toolchain differs from us (it is not consistent about the
    /// pseudo frames of traps, "Swift runtime failure: …"), LLVM's
    /// symbolizer must agree with us.
    func expectLLVMAgrees(_ result: SymbolicationCheck.Result) throws {
      guard !result.mismatches.isEmpty else { return }
      let verdicts = try llvmSymbolizerAgrees(
        result.mismatches.map { mismatch in
          (
            mismatch.path, "0x" + String(mismatch.address, radix: 16),
            mismatch.ours.map { "\($0.name)^\($0.file)^\($0.line)" }
          )
        })
      print(
        "toolchain differs at \(result.mismatches.count); llvm-symbolizer agrees with ours at \(verdicts.agreed)"
      )
      #expect(
        verdicts.disagreed.isEmpty, "\(verdicts.disagreed.prefix(10).joined(separator: "\n"))")
    }

    /// A file whose debug sections are zlib-compressed (`SHF_COMPRESSED`,
    /// as some distributions ship debug files) gives the same frames as the
    /// same code built with plain sections.
    @Test func compressedSectionsGiveTheSameFrames() throws {
      let directory = FileManager.default.temporaryDirectory.appendingPathComponent("dwarf-gz-\(getpid())").path
      try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
      defer { try? FileManager.default.removeItem(atPath: directory) }
      let source = "\(directory)/chain.c"
      try """
        static int leaf(int x) { return x * 3 + 1; }
        static inline __attribute__((always_inline)) int step(int x) { return leaf(x) + leaf(x + 1); }
        int chain(int x) { int sum = 0; for (int i = 0; i < x; i++) sum += step(i); return sum; }
        """.write(toFile: source, atomically: true, encoding: .utf8)
      var images: [DWARFImage] = []
      for (name, flags) in [("plain", ["-g"]), ("compressed", ["-g", "-gz=zlib"])] {
        let output = "\(directory)/\(name).so"
        let (status, text) = try runProcess("/usr/bin/env", ["clang", "-O1", "-shared", "-fPIC"] + flags + ["-o", output, source])
        try #require(status == 0, "clang: \(text)")
        let file = try #require(ELFDebugFile(path: output))
        #expect((file.inflatedBytes > 0) == (name == "compressed"), "\(name): \(file.inflatedBytes) bytes inflated")
        images.append(try #require(DWARFImage(file: file), "\(name): no DWARF"))
      }
      let file = try #require(ELFDebugFile(path: "\(directory)/plain.so"))
      let ranges = DWARFUnit.units(try #require(DWARFSections(file))).flatMap(\.ranges)
      var compared = 0
      for range in ranges {
        for address in range {
          let plain = images[0].frames(at: address, tick: 1)
          #expect(plain == images[1].frames(at: address, tick: 1), "at 0x\(String(address, radix: 16))")
          if plain?.isEmpty == false { compared += 1 }
        }
      }
      #expect(compared > 20, "\(compared) addresses with frames")
    }

    /// Parsing never reads outside a section: every prefix of a real
    /// `.debug_line` and `.debug_info` (truncated files) yields fewer rows, never a crash.
    @Test func truncatedSectionsAreSafe() throws {
      let file = try #require(ELFDebugFile(path: ImageMap.executablePath()))
      let sections = try #require(DWARFSections(file))
      let units = DWARFUnit.units(sections)
      try #require(!units.isEmpty)
      // A unit with code, from the middle of the file.
      let unit = try #require(
        units[(units.count / 2)...].first { !$0.ranges.isEmpty && $0.stmtList != nil })
      let offset = unit.stmtList!
      let full = DWARFLineTable(at: offset, unit: unit, sections: sections)
      #expect(!full.addresses.isEmpty)
      for cut in stride(from: 0, to: 4000, by: 37) {
        var truncated = sections
        truncated.line = UnsafeRawBufferPointer(
          rebasing: sections.line[0..<min(sections.line.count, Int(offset) + cut)])
        truncated.info = UnsafeRawBufferPointer(
          rebasing: sections.info[0..<min(sections.info.count, unit.diesOffset + cut)])
        let table = DWARFLineTable(at: offset, unit: unit, sections: truncated)
        #expect(table.addresses.count <= full.addresses.count)
        var cutUnit = unit
        cutUnit.end = min(unit.end, truncated.info.count)
        _ = DWARFInlineTree(
          unit: cutUnit,
          abbreviations: DWARFUnit.abbreviations(truncated.abbrev, at: unit.abbrevOffset),
          sections: truncated)
        _ = DWARFUnit.units(truncated)
      }
    }

    /// Corrupt bytes never crash the parsers: 300 rounds of random bytes
    /// written into a unit's line program and DIEs (copies of the sections).
    @Test func corruptSectionsAreSafe() throws {
      let file = try #require(ELFDebugFile(path: ImageMap.executablePath()))
      let original = try #require(DWARFSections(file))
      let units = DWARFUnit.units(original)
      let unit = try #require(units[(units.count / 3)...].first { !$0.ranges.isEmpty && $0.stmtList != nil })
      let line = UnsafeMutableRawBufferPointer.allocate(byteCount: original.line.count, alignment: 8)
      let info = UnsafeMutableRawBufferPointer.allocate(byteCount: original.info.count, alignment: 8)
      defer {
        line.deallocate()
        info.deallocate()
      }
      line.copyMemory(from: original.line)
      info.copyMemory(from: original.info)
      var sections = original
      sections.line = UnsafeRawBufferPointer(line)
      sections.info = UnsafeRawBufferPointer(info)
      let lineStart = Int(unit.stmtList!)
      var generator = SplitMix(seed: 22)
      for _ in 0..<300 {
        var saved: [(UnsafeMutableRawBufferPointer, Int, UInt8)] = []
        for _ in 0..<8 {
          let (buffer, start, length) =
            generator.next() % 2 == 0
            ? (line, lineStart, min(4096, line.count - lineStart))
            : (info, unit.offset, unit.end - unit.offset)
          let index = start + Int(generator.next() % UInt64(length))
          saved.append((buffer, index, buffer[index]))
          buffer[index] = UInt8(truncatingIfNeeded: generator.next())
        }
        _ = DWARFLineTable(at: unit.stmtList!, unit: unit, sections: sections)
        _ = DWARFInlineTree(
          unit: unit, abbreviations: DWARFUnit.abbreviations(sections.abbrev, at: unit.abbrevOffset), sections: sections)
        for (buffer, index, byte) in saved.reversed() { buffer[index] = byte }
      }
    }
  }
}

/// A small deterministic generator (SplitMix64) for the tests that corrupt
/// or shuffle their input.
struct SplitMix: RandomNumberGenerator {
  var state: UInt64
  init(seed: UInt64) { state = seed }
  mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
}
