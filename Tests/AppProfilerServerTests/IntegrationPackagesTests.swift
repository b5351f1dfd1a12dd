import Foundation
import Testing

/// Issue 8: the Hummingbird and Vapor integrations are packages of their own
/// (`Integrations/AppProfilerHummingbird`, `Integrations/AppProfilerVapor`),
/// so that a user of the core or of one framework never resolves or builds
/// the other. Their own tests (in-process apps over real sockets) run here,
/// each with its own build folder (`.build-integration-*`, kept between
/// runs). `APP_PROFILER_SKIP_INTEGRATIONS=1` skips them for a quick local run.
@Suite(.serialized) struct IntegrationPackages {
  static var skip: Bool { ProcessInfo.processInfo.environment["APP_PROFILER_SKIP_INTEGRATIONS"] == "1" }

  static func scratch(_ package: String) -> String {
    repositoryRoot + "/.build-integration-" + (package == "AppProfilerVapor" ? "vapor" : "hummingbird")
  }

  @Test(.disabled(if: skip, "APP_PROFILER_SKIP_INTEGRATIONS=1"), arguments: ["AppProfilerHummingbird", "AppProfilerVapor"])
  func packageTestsPass(package: String) throws {
    let path = repositoryRoot + "/Integrations/" + package
    let result = try run(
      "swift", ["test", "--package-path", path, "--scratch-path", Self.scratch(package)], timeout: 3600)
    let tail = (result.output + result.error).split(separator: "\n").suffix(40).joined(separator: "\n")
    #expect(result.status == 0, "\(package) tests failed:\n\(tail)")
    #expect(result.output.contains("passed"), "\(tail)")
  }

  /// Acceptance 4: the resolved graphs. Core: neither framework. Hummingbird
  /// integration: no Vapor. Vapor integration: no Hummingbird.
  @Test(.disabled(if: skip, "APP_PROFILER_SKIP_INTEGRATIONS=1"))
  func dependencyGraphsStaySeparate() throws {
    func graph(_ path: String, scratch: String) throws -> String {
      var arguments = ["package", "--package-path", path]
      arguments += ["--scratch-path", scratch]
      arguments += ["show-dependencies", "--format", "flatlist"]
      let result = try run("swift", arguments, timeout: 1200)
      #expect(result.status == 0, "\(result.error)")
      return result.output.lowercased()
    }
    // Not the root's .build: the running `swift test` holds its lock.
    let core = try graph(repositoryRoot, scratch: repositoryRoot + "/.build-integration-core-graph")
    #expect(!core.contains("vapor") && !core.contains("hummingbird"), "\(core)")
    let hummingbird = try graph(
      repositoryRoot + "/Integrations/AppProfilerHummingbird", scratch: Self.scratch("AppProfilerHummingbird"))
    #expect(hummingbird.contains("hummingbird"))
    #expect(!hummingbird.contains("vapor"), "\(hummingbird)")
    let vapor = try graph(repositoryRoot + "/Integrations/AppProfilerVapor", scratch: Self.scratch("AppProfilerVapor"))
    #expect(vapor.contains("vapor"))
    #expect(!vapor.contains("hummingbird"), "\(vapor)")
    // And nothing of Vapor was ever checked out or built for the Hummingbird package.
    let checkouts = (try? FileManager.default.contentsOfDirectory(atPath: Self.scratch("AppProfilerHummingbird") + "/checkouts")) ?? []
    #expect(!checkouts.isEmpty && !checkouts.contains { $0.lowercased().contains("vapor") }, "\(checkouts)")
  }
}
