// Built in release mode with -g by SourceLocationTests: profiles itself and
// prints, for every frame of this file, "function|file|line|inlined".
import AppProfiler
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
