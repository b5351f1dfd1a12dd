// Built in release mode with -g by SourceLocationTests: profiles itself and
// prints, for every frame of this file, "function|file|line|inlined"; then
// "check|compared|inlined frames|mismatches" for our DWARF reader against the
// toolchain symbolicator on the profile's addresses and a sweep of this binary,
// and each address where they differ.
@_spi(Testing) import AppProfiler
import Synchronization

let fixtureSink = Atomic<UInt64>(0)

@inline(__always)
func fixtureInlinedStep(_ value: UInt64, _ index: Int) -> UInt64 {
  (value &* 6_364_136_223_846_793_005) &+ UInt64(index)  // FIXTURE-INLINED-LINE
}

@inline(never)
func fixtureOuterLoop() {
  var value = fixtureSink.load(ordering: .relaxed) | 1
  for index in 0..<200_000 {
    value = fixtureInlinedStep(value, index)  // FIXTURE-CALL-LINE
  }
  fixtureSink.wrappingAdd(value, ordering: .relaxed)
}

let stop = Atomic<Bool>(false)
let profileTask = Task { try await Profiler.shared.record(mode: .cpu, duration: .seconds(1)) }
Task.detached {
  while !stop.load(ordering: .relaxed) { fixtureOuterLoop() }
}
let profile = try await profileTask.value
stop.store(true, ordering: .relaxed)
for location in profile.locations {
  for (index, line) in location.lines.enumerated() {
    let function = profile.functions[line.function]
    guard function.name.contains("fixture") else { continue }
    let inlined = index < location.lines.count - 1
    print("\(function.name)|\(function.file)|\(line.line)|\(inlined)")
  }
}

// Our DWARF reader against the toolchain's, on optimized code with inlining.
let sampled = Set(profile.locations.map(\.address)).filter { $0 != 0 }
let check = SymbolicationCheck.compareWithToolchain(Array(sampled) + SymbolicationCheck.sweepOfExecutable(count: 1500))
print("check|\(check.compared)|\(check.inlinedFrames)|\(check.mismatches.count)")
// Where the two differ: "mismatch|file|0xADDRESS|name^file^line|…" (ours,
// innermost first) for the test to ask llvm-symbolizer.
for mismatch in check.mismatches {
  let frames = mismatch.ours.map { "\($0.name)^\($0.file)^\($0.line)" }
  print((["mismatch", mismatch.path, "0x" + String(mismatch.address, radix: 16)] + frames).joined(separator: "|"))
}
