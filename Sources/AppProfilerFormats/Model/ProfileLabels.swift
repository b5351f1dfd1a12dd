/// Label views of a profile (docs/labels.md): keep the samples that carry
/// some labels, or regroup samples by the value of one label. Both return a
/// profile, so every encoder writes them unchanged.
extension Profile {
  /// The samples whose labels include every pair of `labels`; threads left
  /// without samples are dropped. Statistics and metadata stay those of the
  /// whole recording; `metadata["label_filter"]` says what was kept.
  public func filtered(labels: [String: String]) -> Profile {
    guard !labels.isEmpty else { return self }
    var result = self
    result.threads = threads.compactMap { thread in
      var kept = thread
      kept.samples = thread.samples.filter { sample in labels.allSatisfy { sample.labels[$0.key] == $0.value } }
      return kept.samples.isEmpty ? nil : kept
    }
    result.metadata["label_filter"] = labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
      .joined(separator: ",")
    return result
  }

  /// One "thread" per value of label `key` (speedscope: one profile per
  /// value; the HTML page: one view per value), named `key=value`, and the
  /// same as a root frame `[key=value]` of every stack (collapsed, pprof,
  /// flame graphs). Samples without the label go to `key=(none)`. The
  /// groups replace the threads (which thread took a sample is not kept in
  /// this view; pprof users filter with `-tagfocus` on the ungrouped profile
  /// instead).
  public func grouped(by key: String) -> Profile {
    var result = self
    var groupOrder: [String] = []
    var groups: [String: [Sample]] = [:]
    var rootOfGroup: [String: Int] = [:]  // group -> location of its root frame
    var rootedStacks: [Int: [String: Int]] = [:]  // stack -> group -> new stack
    for thread in threads {
      for sample in thread.samples {
        let value = sample.labels[key] ?? "(none)"
        if groups[value] == nil {
          groupOrder.append(value)
          groups[value] = []
          result.functions.append(Function(name: "[\(key)=\(value)]"))
          result.locations.append(Location(address: 0, mapping: nil, lines: [Line(function: result.functions.count - 1)]))
          rootOfGroup[value] = result.locations.count - 1
        }
        var moved = sample
        if let stack = rootedStacks[sample.stack]?[value] {
          moved.stack = stack
        } else {
          result.stacks.append(stacks[sample.stack] + [rootOfGroup[value]!])
          rootedStacks[sample.stack, default: [:]][value] = result.stacks.count - 1
          moved.stack = result.stacks.count - 1
        }
        groups[value]!.append(moved)
      }
    }
    result.threads = groupOrder.enumerated().map { index, value in
      ThreadSamples(id: Int32(index + 1), name: "\(key)=\(value)", samples: groups[value]!.sorted {
        $0.timestampNanoseconds < $1.timestampNanoseconds
      })
    }
    result.metadata["grouped_by"] = key
    return result
  }
}
