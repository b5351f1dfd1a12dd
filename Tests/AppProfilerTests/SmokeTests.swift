import AppProfiler
import Testing

@Suite("Smoke") struct SmokeTests {
  @Test func cpuProfileHasSamples() async throws {
    let stop = StopFlag()
    let worker = TestThread { alphaWorkload(stop) }
    let profile = try await Profiler.shared.record(mode: .cpu, duration: .milliseconds(500))
    stop.set()
    worker.join()
    print("engine", profile.engine, "threads", profile.threads.map { ($0.name, $0.id, $0.totalCount) })
    let busiest = profile.threads.max { $0.totalCount < $1.totalCount }!
    let top = Dictionary(grouping: busiest.samples, by: \.stack).sorted { $0.value.count > $1.value.count }.first!
    print(profile.functionsOfStack(top.key).map { profile.functions[$0].name })
    #expect(profile.totalCount > 100)
  }
}
