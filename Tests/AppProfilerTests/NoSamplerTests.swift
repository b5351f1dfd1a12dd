import AppProfiler
import Testing

/// The fallback every platform but Linux gets (and a Linux build with
/// `APP_PROFILER_NO_SAMPLER=1` in the environment of `swift build`,
/// which `NoSamplerBuild` in the server tests runs): sessions throw
/// `unsupportedPlatform`, the rest of the API works. Skipped in a build
/// that has the sampler.
@Suite(.enabled(if: !Profiler.isSupported, "this build has the sampler")) struct NoSamplerFallbackUnit {
  @Test func sessionsThrowUnsupportedPlatform() async throws {
    #expect(throws: ProfilerError.unsupportedPlatform) { _ = try Profiler.shared.start(mode: .cpu, interval: .milliseconds(1)) }
    #expect(throws: ProfilerError.unsupportedPlatform) { _ = try Profiler.shared.startTaskScoped(mode: .wall, interval: .milliseconds(1)) }
    await #expect(throws: ProfilerError.unsupportedPlatform) {
      _ = try await Profiler.shared.record(mode: .alloc, duration: .milliseconds(10))
    }
    #expect(throws: ProfilerError.unsupportedPlatform) { _ = try Profiler.shared.threadSnapshotSynchronously() }
    #expect(throws: ProfilerError.unsupportedPlatform) { try Profiler.shared.enableContinuousAllocationSampling() }
    #expect(Profiler.shared.cumulativeAllocationProfile() == nil)
    #expect(!Profiler.shared.isBusy)
  }

  @Test func labelsStillRunTheirBodies() async {
    let value = await Profiler.withLabels(["route": "/a"]) { () async -> Int in
      #expect(Profiler.currentLabels == ["route": "/a"])
      return 42
    }
    #expect(value == 42)
  }
}
