import Testing

/// End-to-end tests: each starts an AppProfilerTestee child and talks to its
/// server over a real socket. Serialized: each child burns a core.
@Suite(.serialized) enum ServerSuite {}

/// Runs `body` with a fresh testee in a private directory, then stops it.
func withTestee(
  arguments: [String] = [], environment: [String: String] = [:], _ body: (Testee) throws -> Void
) throws {
  let directory = TemporaryDirectory()
  defer { directory.remove() }
  let testee = try Testee(directory: directory.path, arguments: arguments, environment: environment)
  defer { testee.finish() }
  try body(testee)
}
