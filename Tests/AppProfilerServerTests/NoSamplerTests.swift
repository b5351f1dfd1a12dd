import AppProfiler
import AppProfilerServer
import Foundation
import Testing

/// The fallback build (no sampler): built and tested here on Linux with
/// `APP_PROFILER_NO_SAMPLER`, so the code every other platform compiles
/// cannot rot.
@Suite struct NoSamplerBuild {
  /// In a build with the sampler: builds the package without it (its own
  /// scratch directory) and runs the fallback's tests there — the unit
  /// tests, the formats, and `NoSamplerServer` below against a testee built
  /// without the sampler. With `--disable-default-traits`, so the build
  /// without swift-configuration (`traits: []`) compiles too. The switch is
  /// `APP_PROFILER_NO_SAMPLER=1` in the manifest's environment (a define of
  /// the C target only), so this build shares `.build-nested` with the
  /// example packages' builds without recompiling their dependencies.
  @Test(.enabled(if: Profiler.isSupported, "this is the fallback build"))
  func fallbackBuildsAndPasses() throws {
    let result = try run(
      "swift",
      ["test", "--package-path", repositoryRoot, "--scratch-path", nestedBuildFolder, "--no-parallel",
       "--disable-default-traits", "--filter", "NoSamplerFallbackUnit|NoSamplerServer|AppProfilerFormatsTests"],
      environment: ["APP_PROFILER_NO_SAMPLER": "1"], timeout: 3600)
    let summary = result.output.split(separator: "\n").filter { $0.contains("Test run with") || $0.contains("✘") }
    print("no-sampler build: \(summary.joined(separator: "; "))")
    #expect(result.status == 0, "\(result.output.suffix(3000))\n\(result.error.suffix(3000))")
    // The fallback's own tests ran (not skipped) and passed.
    for name in ["sessionsThrowUnsupportedPlatform()", "profileRoutesAnswer501()", "perRequestProfilesPassThrough()"] {
      #expect(result.output.contains("Test \(name) passed"), "\(name) did not pass in the fallback build")
    }
  }
}

/// Run inside the fallback build: the server starts and answers, profile
/// routes say 501 with a one-line reason, the process keeps running.
@Suite(.enabled(if: !Profiler.isSupported, "this build has the sampler")) struct NoSamplerServer {
  @Test func profileRoutesAnswer501() throws {
    try withTestee { testee in
      for target in ["/profile?duration=0.2", "/profile?mode=wall&duration=0.2", "/profile?mode=alloc&duration=0.2",
                     "/threads", "/debug/pprof/profile?seconds=1", "/debug/pprof/allocs?seconds=1"] {
        let answer = try Curl.get(testee, target)
        #expect(answer.status == 501, "\(target): \(answer.status) \(answer.text)")
        #expect(answer.text.contains("not available in this build") && answer.text.split(separator: "\n").count == 1, "\(answer.text)")
      }
      #expect(try Curl.get(testee, "/").status == 200)
      #expect(testee.isAlive)
    }
  }

  /// What the framework middlewares do with `?profile=cpu` here: serve the
  /// request, and say 501 in `X-Profile-Status`.
  @Test func perRequestProfilesPassThrough() async throws {
    var configuration = RequestProfilingConfiguration()
    configuration.enabled = true
    let profiler = RequestProfiler(configuration: configuration)
    guard case .profile(let plan) = profiler.decide(target: "/a?profile=cpu", header: nil, clientIsLoopback: true) else {
      Issue.record("the request was not chosen for profiling")
      return
    }
    let (body, outcome) = try await profiler.run(plan) { "served" }
    #expect(body == "served")
    #expect(outcome.headers.contains { $0.0 == "X-Profile-Status" && $0.1.hasPrefix("501 ") }, "\(outcome.headers)")
  }
}
