// swift-tools-version:6.1
// A Vapor 4 app that uses swift-app-profiler the way a user's app does: the
// root package with its `Vapor` trait (a user names it by URL). Its tests are
// the integration's tests; the root's IntegrationPackagesTests checks that
// this graph holds no Hummingbird.
import PackageDescription

let package = Package(
  name: "vapor-example",
  platforms: [.macOS(.v15)],
  products: [
    .executable(name: "VaporExample", targets: ["VaporExample"]),
  ],
  dependencies: [
    // Pyroscope: the app pushes profiles (async-http-client is Vapor's already).
    .package(name: "swift-app-profiler", path: "../..", traits: ["Vapor", "Pyroscope"]),
    .package(url: "https://github.com/vapor/vapor", from: "4.0.0"),
    // Already a dependency of Vapor; named for trace_id/span_id labels.
    .package(url: "https://github.com/apple/swift-distributed-tracing", from: "1.1.0"),
  ],
  targets: [
    // The README's example, compiled: hot, blocking and allocating routes.
    .executableTarget(
      name: "VaporExample",
      dependencies: [
        .product(name: "AppProfilerVapor", package: "swift-app-profiler"),
        .product(name: "AppProfilerPyroscope", package: "swift-app-profiler"),
        .product(name: "Vapor", package: "vapor"),
      ]
    ),
    .testTarget(
      name: "AppProfilerVaporTests",
      dependencies: [
        "VaporExample",
        .product(name: "AppProfilerVapor", package: "swift-app-profiler"),
        .product(name: "AppProfilerPyroscope", package: "swift-app-profiler"),
        .product(name: "Vapor", package: "vapor"),
        .product(name: "AppProfilerFormats", package: "swift-app-profiler"),
        .product(name: "AppProfiler", package: "swift-app-profiler"),
      ]
    ),
  ],
  swiftLanguageModes: [.v6]
)
