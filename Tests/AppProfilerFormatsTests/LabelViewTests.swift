import AppProfilerFormats
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
