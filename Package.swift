// swift-tools-version:6.1
import PackageDescription

// The framework integrations are products of this package behind traits, off
// by default: `.package(url: …, from: …, traits: ["Hummingbird"])`. Without
// its trait, a framework is neither built nor (SwiftPM prunes dependencies
// that only disabled traits use) resolved; `Tests/AppProfilerServerTests/
// IntegrationPackagesTests.swift` checks both with the consumer packages in
// `Examples/`.

// `APP_PROFILER_NO_SAMPLER=1 swift build`: the C target without its sampler,
// as every platform but Linux compiles it (stubs that answer "unsupported").
// A define of our target only, so the dependencies' builds stay the same and
// a build folder shared with other builds (the tests' `.build-nested`) keeps
// them.
let noSampler = Context.environment["APP_PROFILER_NO_SAMPLER"] == "1"

let package = Package(
  name: "swift-app-profiler",
  // Synchronization's Mutex and Atomic (the core); Hummingbird 2 needs 14.
  platforms: [.macOS(.v15)],
  products: [
    .library(name: "AppProfiler", targets: ["AppProfiler"]),
    .library(name: "AppProfilerFormats", targets: ["AppProfilerFormats"]),
    .library(name: "AppProfilerServer", targets: ["AppProfilerServer"]),
    .library(name: "AppProfilerHummingbird", targets: ["AppProfilerHummingbird"]),
    .library(name: "AppProfilerVapor", targets: ["AppProfilerVapor"]),
    .library(name: "AppProfilerPyroscope", targets: ["AppProfilerPyroscope"]),
    .library(name: "AppProfilerOTLP", targets: ["AppProfilerOTLP"]),
    .executable(name: "app-profiler", targets: ["app-profiler"]),
  ],
  traits: [
    .trait(name: "Hummingbird", description: "The Hummingbird 2 integration (AppProfilerHummingbird)."),
    .trait(name: "Vapor", description: "The Vapor 4 integration (AppProfilerVapor)."),
    .trait(
      name: "Pyroscope",
      description: "PyroscopeExporter (AppProfilerPyroscope): pushes profiles to Grafana Pyroscope with async-http-client."),
    .trait(
      name: "OTLP",
      description: "OTLPExporter (AppProfilerOTLP): pushes profiles to an OpenTelemetry collector over OTLP/HTTP with async-http-client."),
    .trait(
      name: "Configuration",
      description: "ProfileServer(config:) reads its settings from an apple/swift-configuration ConfigReader."),
    .default(enabledTraits: ["Configuration"]),
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    .package(url: "https://github.com/apple/swift-nio", from: "2.81.0"),
    .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
    .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
    // Only with the trait of the same name. swift-configuration without its
    // own default traits (JSON etc.): the app enables those it uses.
    .package(url: "https://github.com/apple/swift-configuration", from: "1.0.0", traits: []),
    .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.0.0"),
    .package(url: "https://github.com/apple/swift-http-types", from: "1.0.0"),
    .package(url: "https://github.com/vapor/vapor", from: "4.0.0"),
    .package(url: "https://github.com/swift-server/async-http-client", from: "1.24.0"),
    // trace_id/span_id labels; already a dependency of both frameworks.
    .package(url: "https://github.com/apple/swift-distributed-tracing", from: "1.1.0"),
  ],
  targets: [
    // Stage 1: the signal path (C). Sampling engines, handler, unwinder, buffer.
    .target(
      name: "CAppProfiler", cSettings: noSampler ? [.define("APP_PROFILER_NO_SAMPLER")] : [],
      linkerSettings: [.linkedLibrary("m"), .linkedLibrary("dl")]),
    // Stage 5: the profile model and its encoders. No dependency on the
    // sampler, so converting and reading profiles works anywhere.
    .target(name: "AppProfilerFormats", dependencies: ["CZlib"]),
    // System zlib (gzip for pprof); on every Swift toolchain image.
    .systemLibrary(name: "CZlib", providers: [.apt(["zlib1g-dev"]), .yum(["zlib-devel"])]),
    // Stages 2-4: sessions, aggregation, symbolization.
    .target(
      name: "AppProfiler",
      dependencies: ["CAppProfiler", "AppProfilerFormats"]
    ),
    // Stage 6: the profile server (HTTP/1.1 over a Unix socket or loopback).
    .target(
      name: "AppProfilerServer",
      dependencies: [
        "AppProfiler",
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOPosix", package: "swift-nio"),
        .product(name: "NIOHTTP1", package: "swift-nio"),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        .product(name: "Configuration", package: "swift-configuration", condition: .when(traits: ["Configuration"])),
        // Started from the environment (EnvironmentExporters) with their traits.
        .target(name: "AppProfilerOTLP", condition: .when(traits: ["OTLP"])),
        .target(name: "AppProfilerPyroscope", condition: .when(traits: ["Pyroscope"])),
      ]
    ),
    // Integrations: empty modules unless their trait is enabled.
    .target(
      name: "AppProfilerHummingbird",
      dependencies: [
        "AppProfiler", "AppProfilerServer", "AppProfilerTracing",
        .product(name: "Hummingbird", package: "hummingbird", condition: .when(traits: ["Hummingbird"])),
        .product(name: "HTTPTypes", package: "swift-http-types", condition: .when(traits: ["Hummingbird"])),
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "Instrumentation", package: "swift-distributed-tracing", condition: .when(traits: ["Hummingbird"])),
      ]
    ),
    .target(
      name: "AppProfilerVapor",
      dependencies: [
        "AppProfiler", "AppProfilerServer", "AppProfilerTracing",
        .product(name: "Vapor", package: "vapor", condition: .when(traits: ["Vapor"])),
        .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
        .product(name: "Instrumentation", package: "swift-distributed-tracing", condition: .when(traits: ["Vapor"])),
      ]
    ),
    // What the push exporters share: windows, queue, backoff; the HTTP post
    // with their traits.
    .target(
      name: "AppProfilerExport",
      dependencies: [
        "AppProfiler",
        .product(name: "AsyncHTTPClient", package: "async-http-client", condition: .when(traits: ["Pyroscope", "OTLP"])),
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOHTTP1", package: "swift-nio"),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
      ]
    ),
    // Continuous profiling: push to an OpenTelemetry collector. Empty without its trait.
    .target(
      name: "AppProfilerOTLP",
      dependencies: [
        "AppProfiler", "AppProfilerExport",
        .product(name: "AsyncHTTPClient", package: "async-http-client", condition: .when(traits: ["OTLP"])),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
      ]
    ),
    // Continuous profiling: push to Pyroscope. Empty without its trait.
    .target(
      name: "AppProfilerPyroscope",
      dependencies: [
        "AppProfiler", "AppProfilerExport",
        .product(name: "AsyncHTTPClient", package: "async-http-client", condition: .when(traits: ["Pyroscope"])),
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOHTTP1", package: "swift-nio"),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
      ]
    ),
    // The trace_id/span_id labels both integrations read.
    .target(
      name: "AppProfilerTracing",
      dependencies: [
        .product(name: "Instrumentation", package: "swift-distributed-tracing", condition: .when(traits: ["Hummingbird", "Vapor"]))
      ]
    ),
    // A child process for the server's end-to-end tests: a workload plus a
    // server, driven over stdin/stdout.
    .executableTarget(
      name: "AppProfilerTestee",
      dependencies: ["AppProfilerServer", .product(name: "Logging", package: "swift-log")],
      path: "Tests/Fixtures/AppProfilerTestee"
    ),
    // Built in release mode with -g by the source-location tests.
    .executableTarget(
      name: "AppProfilerSymbolsFixture",
      dependencies: ["AppProfiler"],
      path: "Tests/Fixtures/SymbolsFixture"
    ),
    // The command-line tool.
    .executableTarget(
      name: "app-profiler",
      dependencies: [
        "AppProfiler",
        "AppProfilerServer",
        .product(name: "Logging", package: "swift-log"),
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
      ]
    ),
    .testTarget(
      name: "AppProfilerTests",
      dependencies: [
        "AppProfiler", "CAppProfiler", .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
      ]
    ),
    .testTarget(
      name: "AppProfilerServerTests",
      dependencies: [
        "AppProfilerServer", "AppProfilerTestee", "app-profiler",
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "Configuration", package: "swift-configuration", condition: .when(traits: ["Configuration"])),
      ]
    ),
    .testTarget(
      name: "AppProfilerFormatsTests",
      dependencies: ["AppProfilerFormats"]
    ),
  ],
  swiftLanguageModes: [.v6]
)
