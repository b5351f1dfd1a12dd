import AppProfiler
import Foundation
import Testing

extension SamplingSuite {
  /// The library example of docs/library.md, nearly verbatim (shorter
  /// durations, a temporary path), so the documented API stays true.
  @Suite struct ReadmeExample {
    @Test func libraryExampleRuns() async throws {
      let path = FileManager.default.temporaryDirectory.appendingPathComponent("readme-\(getpid()).speedscope.json").path
      defer { try? FileManager.default.removeItem(atPath: path) }

      let profile = try await Profiler.shared.record(mode: .cpu, duration: .milliseconds(100))
      try Data(SpeedscopeEncoder().encode(profile)).write(to: URL(fileURLWithPath: path))

      let session = try Profiler.shared.start(mode: .wall, interval: .milliseconds(1))
      _ = spin(1_000_000)  // runTheSlowThing()
      let wall = try await session.stop()

      let table = TopFunctions(wall, idle: .exclude).render(limit: 10)
      #expect(FileManager.default.fileExists(atPath: path))
      #expect(table.hasPrefix("  self%"))
      #expect(wall.mode == .wall)
    }
  }
}
