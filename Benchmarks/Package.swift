// swift-tools-version:6.0
// Benchmarks of swift-app-profiler. A separate package so that users and CI
// of the library never build it. Run everything with ./run.sh.
import PackageDescription

let package = Package(
  name: "swift-app-profiler-benchmarks",
  dependencies: [
    .package(name: "swift-app-profiler", path: ".."),
    .package(url: "https://github.com/apple/swift-nio", from: "2.81.0"),
  ],
  targets: [
    .executableTarget(
      name: "profiler-bench",
      dependencies: [
        .product(name: "AppProfiler", package: "swift-app-profiler"),
        .product(name: "AppProfilerServer", package: "swift-app-profiler"),
        .product(name: "AppProfilerFormats", package: "swift-app-profiler"),
      ]
    ),
    .executableTarget(name: "idle-baseline"),
    .executableTarget(
      name: "idle-server",
      dependencies: [
        .product(name: "AppProfiler", package: "swift-app-profiler"),
        .product(name: "AppProfilerServer", package: "swift-app-profiler"),
        .product(name: "NIOPosix", package: "swift-nio"),
      ]
    ),
  ],
  swiftLanguageModes: [.v6]
)
