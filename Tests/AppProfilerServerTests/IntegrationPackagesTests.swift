import Foundation
import Testing

/// Issue 21: the Hummingbird and Vapor integrations are products of the root
/// package behind the traits `Hummingbird` and `Vapor` (off by default), so a
/// user names one package by URL and gets only the framework they enable.
/// `Examples/HummingbirdExample` and `Examples/VaporExample` are consumer
/// packages that depend on the root by path with one trait each, as a user's
/// app does by URL; their own tests (in-process apps over real sockets) run
/// here, in one build folder shared with the other nested builds
/// (`.build-nested`, kept between runs: what the examples have in common —
/// NIO, async-http-client, BoringSSL, this package — is compiled once).
/// `APP_PROFILER_SKIP_INTEGRATIONS=1` skips them for a quick local run.
@Suite(.serialized) struct IntegrationPackages {
  static var skip: Bool { ProcessInfo.processInfo.environment["APP_PROFILER_SKIP_INTEGRATIONS"] == "1" }

  static func path(_ example: String) -> String { repositoryRoot + "/Examples/" + example }

  /// Where the examples build: one folder for every nested build.
  static var scratch: String { nestedBuildFolder }

  /// Where an example's graph is resolved alone (no build), so its
  /// checkouts show what it pulls and nothing another example pulled.
  static func resolution(_ example: String) -> String {
    repositoryRoot + "/.build-integration-" + (example == "VaporExample" ? "vapor" : "hummingbird")
  }

  @Test(.disabled(if: skip, "APP_PROFILER_SKIP_INTEGRATIONS=1"), arguments: ["HummingbirdExample", "VaporExample"])
  func packageTestsPass(example: String) throws {
    // Serial: a test that samples (the Pyroscope exporter's) must not run
    // next to one that expects the sampler free.
    let result = try run(
      "swift", ["test", "--no-parallel", "--package-path", Self.path(example), "--scratch-path", Self.scratch],
      timeout: 3600)
    // The tests' own lines (stdout) first: the build log is on stderr.
    let failures = result.output.split(separator: "\n").filter { $0.contains("✘") }.prefix(20).joined(separator: "\n")
    let tail = failures + "\n" + result.output.split(separator: "\n").suffix(30).joined(separator: "\n") + "\n"
      + result.error.split(separator: "\n").suffix(10).joined(separator: "\n")
    #expect(result.status == 0, "\(example) tests failed:\n\(tail)")
    #expect(result.output.contains("passed"), "\(tail)")
  }

  /// The resolved graphs: with the `Hummingbird` trait, no Vapor; with
  /// `Vapor`, no Hummingbird; and nothing of Vapor checked out (so nothing
  /// built) for the Hummingbird app.
  @Test(.disabled(if: skip, "APP_PROFILER_SKIP_INTEGRATIONS=1"))
  func eachTraitResolvesOnlyItsFramework() throws {
    let hummingbird = try Self.graph(Self.path("HummingbirdExample"), scratch: Self.resolution("HummingbirdExample"))
    #expect(hummingbird.contains("hummingbird"))
    #expect(!hummingbird.contains("vapor"), "\(hummingbird)")
    let vapor = try Self.graph(Self.path("VaporExample"), scratch: Self.resolution("VaporExample"))
    #expect(vapor.contains("vapor"))
    #expect(!vapor.contains("hummingbird"), "\(vapor)")
    let checkouts = Self.checkouts(Self.resolution("HummingbirdExample"))
    #expect(!checkouts.isEmpty && !checkouts.contains { $0.contains("vapor") }, "\(checkouts)")
    let pins = (try? String(contentsOfFile: Self.path("HummingbirdExample") + "/Package.resolved", encoding: .utf8)) ?? ""
    #expect(pins.contains("hummingbird") && !pins.lowercased().contains("vapor"), "\(pins)")
  }

  /// A consumer that names the package without traits (the README's plain
  /// `.package(url:…)` line, here by path): neither framework nor
  /// async-http-client is resolved, checked out or pinned; and one that
  /// names both framework traits gets both.
  @Test func withoutTraitsNoFrameworkIsResolved() throws {
    let consumer = FileManager.default.temporaryDirectory.appendingPathComponent("app-profiler-consumer-\(getpid())")
    defer { try? FileManager.default.removeItem(at: consumer) }
    func write(traits: String?) throws {
      try? FileManager.default.removeItem(at: consumer)
      try FileManager.default.createDirectory(
        at: consumer.appendingPathComponent("Sources/App"), withIntermediateDirectories: true)
      let dependency =
        traits.map { ".package(name: \"swift-app-profiler\", path: \"\(repositoryRoot)\", traits: [\($0)])" }
        ?? ".package(name: \"swift-app-profiler\", path: \"\(repositoryRoot)\")"
      let manifest = """
        // swift-tools-version:6.1
        import PackageDescription
        let package = Package(
          name: "consumer",
          platforms: [.macOS(.v15)],
          dependencies: [\(dependency)],
          targets: [
            .executableTarget(name: "App", dependencies: [.product(name: "AppProfilerServer", package: "swift-app-profiler")])
          ]
        )
        """
      try manifest.write(to: consumer.appendingPathComponent("Package.swift"), atomically: true, encoding: .utf8)
      try "import AppProfilerServer\n".write(
        to: consumer.appendingPathComponent("Sources/App/main.swift"), atomically: true, encoding: .utf8)
    }
    let scratch = consumer.appendingPathComponent(".build").path
    try write(traits: nil)
    let plain = try Self.graph(consumer.path, scratch: scratch)
    #expect(plain.contains("swift-nio"), "\(plain)")
    // Neither framework, nor async-http-client (the Pyroscope trait's).
    let optional = ["hummingbird", "vapor", "async-http-client"]
    #expect(!optional.contains { plain.contains($0) }, "\(plain)")
    #expect(!Self.checkouts(scratch).contains { checkout in optional.contains { checkout.contains($0) } })
    let pins = (try? String(contentsOfFile: consumer.path + "/Package.resolved", encoding: .utf8)) ?? ""
    #expect(pins.contains("swift-nio") && !optional.contains { pins.contains($0) }, "\(pins)")

    try write(traits: "\"Hummingbird\", \"Vapor\"")
    let both = try Self.graph(consumer.path, scratch: scratch)
    #expect(both.contains("hummingbird") && both.contains("vapor"), "\(both)")
  }

  /// `swift package show-dependencies` (flat, lowercased); resolves the
  /// graph into `scratch`.
  static func graph(_ path: String, scratch: String) throws -> String {
    let arguments = ["package", "--package-path", path, "--scratch-path", scratch, "show-dependencies", "--format", "flatlist"]
    let result = try run("swift", arguments, timeout: 1200)
    #expect(result.status == 0, "\(result.error)")
    return result.output.lowercased()
  }

  static func checkouts(_ scratch: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: scratch + "/checkouts")) ?? []).map { $0.lowercased() }
  }
}
