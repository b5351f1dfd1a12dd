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

/// Every relative link in README.md and docs/ leads somewhere: the file
/// exists and, for `file.md#anchor`, the page has a heading with that
/// GitHub anchor (lowercase, punctuation dropped, spaces as hyphens).
@Suite struct DocLinksTests {
  static func anchors(of page: String) -> Set<String> {
    var result = Set<String>()
    var inFence = false
    for line in page.split(separator: "\n", omittingEmptySubsequences: false) {
      if line.hasPrefix("```") { inFence.toggle() }
      guard !inFence, line.hasPrefix("#") else { continue }
      let title = line.drop { $0 == "#" }.trimmingCharacters(in: .whitespaces)
      let slug = String(
        title.lowercased().compactMap { character -> Character? in
          if character == " " { return "-" }
          return character.isLetter || character.isNumber || character == "-" || character == "_" ? character : nil
        })
      result.insert(slug)
    }
    return result
  }

  @Test func relativeLinksResolve() throws {
    let fileManager = FileManager.default
    let docs = try fileManager.contentsOfDirectory(atPath: repositoryRoot + "/docs").filter { $0.hasSuffix(".md") }
    let pages = ["README.md", "BENCHMARKS.md"] + docs.map { "docs/" + $0 }
    let link = try Regex(#"\]\(([^)\s]+)\)"#)
    var checked = 0
    for page in pages {
      let text = try String(contentsOfFile: repositoryRoot + "/" + page, encoding: .utf8)
      let directory = (page as NSString).deletingLastPathComponent
      for match in text.matches(of: link) {
        let target = String(match.output[1].substring ?? "")
        if target.contains("://") || target.hasPrefix("mailto:") { continue }
        let parts = target.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false)
        let path = String(parts[0])
        let file = path.isEmpty ? page : (directory.isEmpty ? path : directory + "/" + path)
        let resolved = (repositoryRoot + "/" + file as NSString).standardizingPath
        #expect(fileManager.fileExists(atPath: resolved), "\(page): link to \(target) — no \(file)")
        if parts.count == 2, resolved.hasSuffix(".md"), let linked = try? String(contentsOfFile: resolved, encoding: .utf8) {
          #expect(Self.anchors(of: linked).contains(String(parts[1])), "\(page): link to \(target) — no such heading")
        }
        checked += 1
      }
    }
    #expect(checked >= 20, "only \(checked) links found")
  }
}
