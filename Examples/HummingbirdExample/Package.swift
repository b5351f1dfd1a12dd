// swift-tools-version:6.1
// A Hummingbird 2 app that uses swift-app-profiler the way a user's app does:
// the root package with its `Hummingbird` trait (a user names it by URL). Its
// tests are the integration's tests; the root's IntegrationPackagesTests
// checks that this graph holds no Vapor.
import PackageDescription

let package = Package(
  name: "hummingbird-example",
  platforms: [.macOS(.v15)],
  products: [
    .executable(name: "HummingbirdExample", targets: ["HummingbirdExample"]),
  ],
  dependencies: [
    // `.defaults` keeps the Configuration trait (ProfileServer(config:));
    // Pyroscope, OTLP: the profile server pushes when APP_PROFILER_PYROSCOPE_URL
    // or OTEL_EXPORTER_OTLP_(PROFILES_)ENDPOINT is set (no line in main.swift).
    .package(name: "swift-app-profiler", path: "../..", traits: [.defaults, "Hummingbird", "Pyroscope", "OTLP"]),
    .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.0.0"),
    .package(url: "https://github.com/apple/swift-http-types", from: "1.0.0"),
    .package(url: "https://github.com/apple/swift-nio", from: "2.81.0"),
    .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
    // Already a dependency of Hummingbird; named for trace_id/span_id labels.
    .package(url: "https://github.com/apple/swift-distributed-tracing", from: "1.1.0"),
    // main.swift reads the profiler's settings through a ConfigReader.
    .package(url: "https://github.com/apple/swift-configuration", from: "1.0.0", traits: []),
    // The OTLP exporter test collects the exporter's log lines.
    .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
  ],
  targets: [
    // The README's example, compiled: hot, blocking and allocating routes.
    .executableTarget(
      name: "HummingbirdExample",
      dependencies: [
        .product(name: "AppProfilerHummingbird", package: "swift-app-profiler"),
        .product(name: "Hummingbird", package: "hummingbird"),
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "Instrumentation", package: "swift-distributed-tracing"),
        .product(name: "Configuration", package: "swift-configuration"),
      ]
    ),
    .testTarget(
      name: "AppProfilerHummingbirdTests",
      dependencies: [
        "HummingbirdExample",
        .product(name: "AppProfilerHummingbird", package: "swift-app-profiler"),
        .product(name: "Hummingbird", package: "hummingbird"),
        .product(name: "AppProfilerFormats", package: "swift-app-profiler"),
        .product(name: "AppProfilerOTLP", package: "swift-app-profiler"),
        .product(name: "AppProfilerServer", package: "swift-app-profiler"),
        .product(name: "AppProfiler", package: "swift-app-profiler"),
        .product(name: "Logging", package: "swift-log"),
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
