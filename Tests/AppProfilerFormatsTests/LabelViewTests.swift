import AppProfilerFormats
import Foundation
import Testing

/// `Profile.filtered(labels:)` and `grouped(by:)`: the label views the
/// server's `label=` and `group_by=` write with every encoder.
@Suite struct LabelViewTests {
  func labelled() -> Profile {
    var profile = sampleProfile(mode: .cpu)
    profile.threads[0].samples = profile.threads[0].samples.map { var s = $0; s.labels = ["route": "/a"]; return s }
    profile.threads[1].samples = profile.threads[1].samples.enumerated().map { index, sample in
      var s = sample
      if index % 2 == 0 { s.labels = ["route": "/b", "method": "GET"] }
      return s
    }
    return profile
  }

  @Test func filterKeepsOnlyMatchingSamples() {
    let profile = labelled()
    let a = profile.filtered(labels: ["route": "/a"])
    #expect(a.threads.flatMap(\.samples).allSatisfy { $0.labels["route"] == "/a" })
    #expect(a.totalCount == profile.threads[0].samples.reduce(0) { $0 + profile.count($1) })
    #expect(a.metadata["label_filter"] == "route=/a")
    let both = profile.filtered(labels: ["route": "/b", "method": "GET"])
    #expect(!both.threads.isEmpty && both.threads.flatMap(\.samples).allSatisfy { $0.labels["method"] == "GET" })
    #expect(profile.filtered(labels: ["route": "/none"]).threads.isEmpty)
    #expect(profile.filtered(labels: [:]) == profile)
  }

  @Test func groupsBecomeThreadsAndRootFrames() {
    let profile = labelled()
    let grouped = profile.grouped(by: "route")
    #expect(Set(grouped.threads.map(\.name)).isSuperset(of: ["route=/a", "route=/b"]))
    #expect(grouped.totalCount == profile.totalCount)
    for thread in grouped.threads {
      for sample in thread.samples {
        let root = grouped.functionsOfStack(sample.stack).first.map { grouped.functions[$0].name }
        #expect(root == "[\(thread.name)]")
      }
    }
    // The collapsed encoder writes the group as the root frame.
    let collapsed = String(decoding: CollapsedEncoder().encode(grouped), as: UTF8.self)
    #expect(collapsed.split(separator: "\n").allSatisfy { $0.hasPrefix("[route=") })
    #expect(grouped.metadata["grouped_by"] == "route")
  }
}

/// Labels in speedscope files: `x-app-profiler.labels`, read back by the
/// decoder (and by the HTML viewer's label selector).
@Suite struct SpeedscopeLabelTests {
  @Test func labelsSurviveARoundTrip() throws {
    let profile = LabelViewTests().labelled()
    let bytes = SpeedscopeEncoder().encode(profile)
    let json = try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
    let ours = try #require(json["x-app-profiler"] as? [String: Any])
    let labels = try #require(ours["labels"] as? [String: Any])
    let sets = try #require(labels["sets"] as? [[String: String]])
    #expect(sets.first == [:])
    #expect(sets.contains(["route": "/a"]) && sets.contains(["route": "/b", "method": "GET"]))
    let decoded = try SpeedscopeDecoder().decode(bytes)
    // Per label set, the same weight as the original (merging never joins
    // samples of different sets).
    for set in sets {
      let before = profile.filtered(labels: set).threads.flatMap(\.samples).map { profile.defaultValue($0) }.reduce(0, +)
      let after = decoded.threads.flatMap(\.samples).filter { $0.labels == set }.map { decoded.defaultValue($0) }.reduce(0, +)
      if !set.isEmpty { #expect(before == after, "\(set)") }
    }
  }

  @Test func noLabelsNoTable() throws {
    let bytes = SpeedscopeEncoder().encode(sampleProfile(mode: .cpu))
    let json = try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
    let ours = try #require(json["x-app-profiler"] as? [String: Any])
    #expect(ours["labels"] == nil)
  }
}
