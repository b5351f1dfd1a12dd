// swift-tools-version:6.0
// Hummingbird 2 integration of swift-app-profiler: a package of its own, so
// that users of the core (and of the Vapor integration) never resolve or
// build Hummingbird.
import PackageDescription

let package = Package(
  name: "swift-app-profiler-hummingbird",
  platforms: [.macOS(.v14)],
  products: [
    .library(name: "AppProfilerHummingbird", targets: ["AppProfilerHummingbird"]),
    .executable(name: "HummingbirdExample", targets: ["HummingbirdExample"]),
  ],
  dependencies: [
    .package(name: "swift-app-profiler", path: "../.."),
    .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.0.0"),
    .package(url: "https://github.com/apple/swift-http-types", from: "1.0.0"),
    .package(url: "https://github.com/apple/swift-nio", from: "2.81.0"),
    .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
    // Already a dependency of Hummingbird; named for trace_id/span_id labels.
    .package(url: "https://github.com/apple/swift-distributed-tracing", from: "1.1.0"),
  ],
  targets: [
    .target(
      name: "AppProfilerHummingbird",
      dependencies: [
        .product(name: "AppProfiler", package: "swift-app-profiler"),
        .product(name: "AppProfilerServer", package: "swift-app-profiler"),
        .product(name: "Hummingbird", package: "hummingbird"),
        .product(name: "HTTPTypes", package: "swift-http-types"),
        .product(name: "Instrumentation", package: "swift-distributed-tracing"),
      ]
    ),
    // The README's example, compiled: hot, blocking and allocating routes.
    .executableTarget(
      name: "HummingbirdExample",
      dependencies: [
        "AppProfilerHummingbird",
        .product(name: "Hummingbird", package: "hummingbird"),
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "Instrumentation", package: "swift-distributed-tracing"),
      ]
    ),
    .testTarget(
      name: "AppProfilerHummingbirdTests",
      dependencies: [
        "AppProfilerHummingbird", "HummingbirdExample",
        .product(name: "Hummingbird", package: "hummingbird"),
        .product(name: "AppProfilerFormats", package: "swift-app-profiler"),
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOPosix", package: "swift-nio"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        .product(name: "Tracing", package: "swift-distributed-tracing"),
        .product(name: "InMemoryTracing", package: "swift-distributed-tracing"),
      ]
    ),
  ],
  swiftLanguageModes: [.v6]
)
