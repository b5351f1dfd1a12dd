// swift-tools-version:6.0
import PackageDescription

let package = Package(
  name: "swift-app-profiler",
  products: [
    .library(name: "AppProfiler", targets: ["AppProfiler"]),
    .library(name: "AppProfilerFormats", targets: ["AppProfilerFormats"]),
    .library(name: "AppProfilerServer", targets: ["AppProfilerServer"]),
    .executable(name: "app-profiler", targets: ["app-profiler"]),
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    .package(url: "https://github.com/apple/swift-nio", from: "2.81.0"),
    .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
    .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
  ],
  targets: [
    // Stage 1: the signal path (C). Sampling engines, handler, unwinder, buffer.
    .target(name: "CAppProfiler", linkerSettings: [.linkedLibrary("m"), .linkedLibrary("dl")]),
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
      dependencies: ["AppProfiler", "CAppProfiler"]
    ),
    .testTarget(
      name: "AppProfilerServerTests",
      dependencies: [
        "AppProfilerServer", "AppProfilerTestee", "app-profiler",
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        .product(name: "Logging", package: "swift-log"),
      ]
    ),
    .testTarget(
      name: "AppProfilerFormatsTests",
      dependencies: ["AppProfilerFormats"]
    ),
  ],
  swiftLanguageModes: [.v6]
)
