import Foundation
import Testing

@testable import AppProfilerServer

/// The reference pages stay complete: every route of the route table is in
/// docs/http-api.md, every `APP_PROFILER_*` variable the code reads is in
/// docs/configuration.md.
@Suite struct DocsTests {
  static func read(_ relativePath: String) throws -> String {
    try String(contentsOfFile: repositoryRoot + "/" + relativePath, encoding: .utf8)
  }

  @Test func everyRouteIsInTheHTTPAPIPage() throws {
    let page = try Self.read("docs/http-api.md")
    for route in Routes.all {
      #expect(page.contains("`GET \(route.path)") || page.contains(" \(route.path)"), "docs/http-api.md lacks \(route.path)")
    }
  }

  @Test func everyEnvironmentVariableIsInTheConfigurationPage() throws {
    let page = try Self.read("docs/configuration.md")
    let sources = repositoryRoot + "/Sources"
    var variables = Set<String>()
    let files = FileManager.default.enumerator(atPath: sources)?.compactMap { $0 as? String } ?? []
    let pattern = try Regex(#""(APP_PROFILER_[A-Z_]+)""#)
    for file in files where file.hasSuffix(".swift") {
      let text = try String(contentsOfFile: sources + "/" + file, encoding: .utf8)
      for match in text.matches(of: pattern) {
        if let name = match.output[1].substring { variables.insert(String(name)) }
      }
    }
    #expect(variables.count >= 15, "found only \(variables.sorted())")
    for variable in variables.sorted() {
      #expect(page.contains("`\(variable)`"), "docs/configuration.md lacks \(variable)")
    }
  }
}
