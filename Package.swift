// swift-tools-version:6.0
import PackageDescription

let package = Package(
  name: "swift-app-profiler",
  products: [
    .library(name: "AppProfiler", targets: ["AppProfiler"]),
    .library(name: "AppProfilerFormats", targets: ["AppProfilerFormats"]),
    .executable(name: "app-profiler", targets: ["app-profiler"]),
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0")
  ],
  targets: [
    // Stage 1: the signal path (C). Sampling engines, handler, unwinder, buffer.
    .target(name: "CAppProfiler"),
    // Stage 5: the profile model and its encoders. No dependency on the
    // sampler, so converting and reading profiles works anywhere.
    .target(name: "AppProfilerFormats"),
    // Stages 2-4: sessions, aggregation, symbolization.
    .target(
      name: "AppProfiler",
      dependencies: ["CAppProfiler", "AppProfilerFormats"]
    ),
    // The command-line tool.
    .executableTarget(
      name: "app-profiler",
      dependencies: [
        "AppProfiler",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
      ]
    ),
    .testTarget(
      name: "AppProfilerTests",
      dependencies: ["AppProfiler", "CAppProfiler"]
    ),
    .testTarget(
      name: "AppProfilerFormatsTests",
      dependencies: ["AppProfilerFormats"]
    ),
  ],
  swiftLanguageModes: [.v6]
)
