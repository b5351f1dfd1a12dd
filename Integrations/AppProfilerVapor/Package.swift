// swift-tools-version:6.0
// Vapor 4 integration of swift-app-profiler: a package of its own, so that
// users of the core (and of the Hummingbird integration) never resolve or
// build Vapor.
import PackageDescription

let package = Package(
  name: "swift-app-profiler-vapor",
  platforms: [.macOS(.v13)],
  products: [
    .library(name: "AppProfilerVapor", targets: ["AppProfilerVapor"]),
    .executable(name: "VaporExample", targets: ["VaporExample"]),
  ],
  dependencies: [
    .package(name: "swift-app-profiler", path: "../.."),
    .package(url: "https://github.com/vapor/vapor", from: "4.0.0"),
    // Already a dependency of Vapor; named for trace_id/span_id labels.
    .package(url: "https://github.com/apple/swift-distributed-tracing", from: "1.1.0"),
  ],
  targets: [
    .target(
      name: "AppProfilerVapor",
      dependencies: [
        .product(name: "AppProfiler", package: "swift-app-profiler"),
        .product(name: "AppProfilerServer", package: "swift-app-profiler"),
        .product(name: "Vapor", package: "vapor"),
        .product(name: "Instrumentation", package: "swift-distributed-tracing"),
      ]
    ),
    // The README's example, compiled: hot, blocking and allocating routes.
    .executableTarget(
      name: "VaporExample",
      dependencies: ["AppProfilerVapor", .product(name: "Vapor", package: "vapor")]
    ),
    .testTarget(
      name: "AppProfilerVaporTests",
      dependencies: [
        "AppProfilerVapor", "VaporExample",
        .product(name: "Vapor", package: "vapor"),
        .product(name: "AppProfilerFormats", package: "swift-app-profiler"),
      ]
    ),
  ],
  swiftLanguageModes: [.v6]
)
