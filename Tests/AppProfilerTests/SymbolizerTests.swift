@testable import AppProfiler
import CAppProfiler
import Testing
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A source symbolicator that knows nothing, to exercise the ELF fallback.
struct SilentSourceSymbolicator: SourceSymbolicator {
  func sourceFrames(for addresses: [UInt64], images: ImageMap, deadline: ContinuousClock.Instant?) -> [[SourceFrame]?] {
    addresses.map { _ in [] }
  }

  func sourceFramesLater(
    for addresses: [UInt64], images: ImageMap, deliver: @escaping @Sendable (Int, [[SourceFrame]]) -> Void
  ) {
    deliver(0, addresses.map { _ in [] })
  }
}

@inline(never) func symbolizerProbeTarget() -> UInt64 {
  sink.wrappingAdd(1, ordering: .relaxed)
  return 1
}

@Suite struct SymbolizerTests {
  /// An address inside `symbolizerProbeTarget`, from the ELF symbol table
  /// of this test binary.
  func probeAddress() throws -> UInt64 {
    let images = ImageMap.current()
    let executable = try #require(images.images.first { $0.path == ImageMap.executablePath() })
    let table = try #require(ELFSymbolTable(path: executable.path))
    let symbol = try #require(table.address(ofFirst: { $0.contains("symbolizerProbeTarget") }))
    return executable.bias &+ symbol &+ 4
  }

  @Test func elfSymbolsWhenNoSourceInformation() throws {
    let address = try probeAddress()
    let symbolizer = Symbolizer(source: SilentSourceSymbolicator())
    let frame = symbolizer.resolve([address], in: ImageMap.current())[0]
    #expect(frame.name?.contains("symbolizerProbeTarget()") == true)
    #expect(frame.functions.count == 1)
    #expect(frame.functions[0].file == "")
    #expect(frame.functions[0].systemName.hasPrefix("$s"))
  }

  /// Pins what we use of the toolchain's Runtime symbolicator (SPI): a
  /// mangled name, the source file and a line for an address of this binary.
  @Test func runtimeSymbolicatorGivesFileAndLine() throws {
    let address = try probeAddress()
    let frames = RuntimeSourceSymbolicator().sourceFrames(for: [address], images: ImageMap.current())[0]
    let outer = try #require(frames.last)
    #expect(outer.rawName.contains("symbolizerProbeTarget"))
    #expect(outer.file.hasSuffix("Tests/AppProfilerTests/SymbolizerTests.swift"))
    #expect(outer.line > 0)
    #expect(!outer.inlined)
  }

  /// Past the budget an address gets its ELF symbol at once, is marked
  /// pending, and has file:line by a later call (computed in the background).
  @Test func budgetGivesSymbolNamesNowAndSourceFramesLater() async throws {
    let address = try probeAddress()
    let symbolizer = Symbolizer()
    let now = symbolizer.resolve([address], in: ImageMap.current(), budget: .zero)[0]
    #expect(now.sourcePending)
    #expect(now.name?.contains("symbolizerProbeTarget()") == true)
    #expect(now.functions.count == 1 && now.functions[0].file == "")
    let start = ContinuousClock.now
    while symbolizer.pendingSourceFrames > 0 && ContinuousClock.now - start < .seconds(60) {
      try await Task.sleep(for: .milliseconds(20))
    }
    #expect(symbolizer.pendingSourceFrames == 0)
    let later = symbolizer.resolve([address], in: ImageMap.current(), budget: .zero)[0]
    #expect(!later.sourcePending)
    #expect(later.functions.last?.file.hasSuffix("Tests/AppProfilerTests/SymbolizerTests.swift") == true)
    #expect((later.functions.last?.line ?? 0) > 0)
    // Without a budget everything is resolved in the call.
    let unbounded = Symbolizer().resolve([address], in: ImageMap.current())[0]
    #expect(!unbounded.sourcePending)
    #expect(unbounded.functions.last?.file.isEmpty == false)
  }

  /// The vDSO has no file on disk: its symbols come from its image in
  /// memory (perf names these frames too; they were `linux-vdso.so.1+0x…`).
  @Test func vdsoFunctionsAreNamed() throws {
    let handle = try #require(dlopen("linux-vdso.so.1", RTLD_NOW | RTLD_NOLOAD), "no vDSO loaded")
    defer { dlclose(handle) }
    let symbol = try #require(dlsym(handle, "__vdso_clock_gettime") ?? dlsym(handle, "clock_gettime"))
    let address = UInt64(UInt(bitPattern: symbol)) + 4
    let names = Profiler.shared.symbolNames(for: [address])
    #expect(names[address]?.contains("clock_gettime") == true, "\(names)")
    // And in a profile: a loop reading the clock spends its time there.
    let stop = StopFlag()
    let worker = TestThread(name: "clock-reader") {
      var sink = timespec()
      while !stop.isSet { clock_gettime(CLOCK_MONOTONIC, &sink) }
    }
    defer {
      stop.set()
      worker.join()
    }
    // Suites outside SamplingSuite may run next to the server's tests, whose
    // child processes can hold both cores for a while: up to three tries
    // for a window in which the reader got CPU time.
    var leaves: [String] = []
    var vdso: [String] = []
    let readerTID = worker.waitForTID()
    for _ in 0..<3 where vdso.isEmpty {
      let cpuBefore = cpuNanoseconds(ofThread: readerTID)
      let profile = try Profiler.shared.recordSynchronously(mode: .cpu, duration: .milliseconds(500), interval: .milliseconds(1))
      let cpuUsed = cpuNanoseconds(ofThread: readerTID) - cpuBefore
      // A reader that ran must have been sampled (starved is not a failure).
      #expect(
        cpuUsed < 100_000_000 || profile.totalCount > 0,
        "\(cpuUsed / 1_000_000) ms of CPU, no samples; engine \(profile.engine), \(profile.statistics), metadata \(profile.metadata.sorted { $0.key < $1.key })")
      leaves = profile.threads.flatMap(\.samples).compactMap { sample -> String? in
        guard let leaf = profile.stacks[sample.stack].first else { return nil }
        return profile.locations[leaf].lines.last.map { profile.functions[$0.function].name }
          ?? profile.fallbackName(for: profile.locations[leaf])
      }
      vdso = leaves.filter { $0.contains("clock_gettime") || $0.contains("vdso") }
    }
    print("clock loop: \(vdso.count) of \(leaves.count) leaves in the vDSO; unnamed: \(vdso.filter { $0.contains("linux-vdso") }.count)")
    #expect(!vdso.isEmpty)
    #expect(vdso.allSatisfy { !$0.contains("linux-vdso.so") }, "\(Set(vdso))")
  }

  /// PLT stubs have no symbol: named `<symbol>@plt` as objdump names them,
  /// in this test binary (GNU ld's lazy `.plt`) and in libc.
  @Test func pltStubsAreNamedAsObjdumpNamesThem() throws {
    let binaries = [
      URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path,
      "/usr/lib/x86_64-linux-gnu/libc.so.6",
    ]
    for path in binaries where FileManager.default.fileExists(atPath: path) {
      let table = try #require(ELFSymbolTable(path: path))
      var checked = 0
      for section in [".plt", ".plt.sec"] {
        let (status, listing) = try runProcess("/usr/bin/objdump", ["-d", "-j", section, path])
        guard status == 0 else { continue }
        // "00000000000db8d0 <__cxa_finalize@plt>:"
        for line in listing.split(separator: "\n") where line.hasSuffix("@plt>:") && !line.contains("*ABS*") {
          let parts = line.split(separator: " ")
          guard parts.count == 2, let address = UInt64(parts[0], radix: 16) else { continue }
          let name = String(parts[1].dropFirst().dropLast(2))
          #expect(table.lookup(address)?.name == name, "\(path) \(String(address, radix: 16))")
          #expect(table.lookup(address + 6).map { $0.name == name && $0.offset == 6 } == true)
          checked += 1
        }
      }
      print("\(path): \(checked) PLT stubs named as objdump names them")
      #expect(checked > 10, "\(path)")
    }
    #expect(Demangler.demangle("$ss15ContinuousClockV3nowAB7InstantVvgZ@plt") == "static Swift.ContinuousClock.now.getter : Swift.ContinuousClock.Instant@plt")
  }

  @Test func unknownAddressesStayUnsymbolized() {
    let frame = Symbolizer.shared.resolve([0x10], in: ImageMap.current())[0]
    #expect(frame.image == nil)
    #expect(frame.functions.isEmpty)
  }
}

@Suite struct DemanglerTests {
  @Test func swiftAndCxxNames() {
    #expect(Demangler.demangle("$s4main5alphayyF") == "main.alpha() -> ()")
    #expect(Demangler.demangle("_ZN5swift12swift_retainEPv").contains("swift::swift_retain"))
    #expect(Demangler.demangle("_Znotvalid") == "_Znotvalid")
    #expect(Demangler.demangle("epoll_wait") == "epoll_wait")
  }

  /// Async partial functions (mangled `…TQ<n>_` await-resume, `…TY<n>_`
  /// suspend-resume) are named as the async function they belong to.
  @Test func asyncPartialFunctionsAreNamedAsTheirFunction() {
    #expect(Demangler.demangle("$s1a5innerSiyYaF") == "a.inner() async -> Swift.Int")
    #expect(Demangler.demangle("$s1a5innerSiyYaFTQ0_") == "a.inner() async -> Swift.Int")
    #expect(Demangler.demangle("$s1a5innerSiyYaFTY1_") == "a.inner() async -> Swift.Int")
    #expect(Demangler.asyncFunctionName("(12) await resume partial function for f()") == "f()")
    #expect(Demangler.asyncFunctionName("(x) await resume partial function for f()") == "(x) await resume partial function for f()")
    #expect(Demangler.asyncFunctionName("(1) something else") == "(1) something else")
  }
}

/// cpu and wall stacks can hold a garbage return address (a frame the
/// unwinder misread). One with the top bit set looks like an alloc type
/// frame; dereferencing it as type metadata crashed the profiled process
/// (seen under TSan, whose deferred signals hand the handler stale
/// registers). It must stay an unknown address.
@Suite struct ProfileBuilderTests {
  @Test func topBitAddressInACPUStackIsNotTypeMetadata() throws {
    let garbage: UInt64 = 0x8000_0000_0000_0003  // misaligned, unmapped
    let header = MemoryLayout<cap_sample_header>.size
    var bytes = [UInt8](repeating: 0, count: header + 16)
    bytes.withUnsafeMutableBytes { raw in
      raw.storeBytes(of: UInt64(1), toByteOffset: 0, as: UInt64.self)  // timestamp
      raw.storeBytes(of: UInt64(1), toByteOffset: 8, as: UInt64.self)  // weight
      raw.storeBytes(of: Int32(getpid()), toByteOffset: 16, as: Int32.self)  // tid
      raw.storeBytes(of: UInt16(2), toByteOffset: 20, as: UInt16.self)  // depth
      raw.storeBytes(of: garbage, toByteOffset: header, as: UInt64.self)  // leaf
      raw.storeBytes(of: garbage &+ 8, toByteOffset: header + 8, as: UInt64.self)  // caller
    }
    var collector = SampleCollector()
    bytes.withUnsafeBytes { collector.ingest($0) }
    let builder = ProfileBuilder(
      mode: .cpu, startTimeNanoseconds: 0, startMonotonicNanoseconds: 0,
      durationNanoseconds: 1_000_000, report: SessionReport(engine: "test", period: 1_000_000))
    let profile = builder.build(from: &collector)
    #expect(profile.totalCount == 1)
    #expect(profile.locations.count == 2)
    #expect(!profile.functions.contains { $0.isAllocatedType })
  }
}
