/// The label sets of one collector's samples, copied from the registry when
/// drained (a registry id is reused once its sets are gone). A sample's
/// `labels` is an index here, with the registry id's scope half kept
/// (``LabelScope``).
struct LabelSetTable: Sendable {
  private(set) var sets: [[String: String]] = [[:]]
  private var ids: [[String: String]: UInt64] = [:]

  /// Labels that make every request's set its own: left out of running
  /// totals, which must stay bounded.
  static let perRequestKeys: Set<String> = ["trace_id", "span_id"]

  /// The labels of a local id.
  func labels(of id: UInt64) -> [String: String] {
    let index = Int(LabelScope.labels(of: id))
    return index < sets.count ? sets[index] : [:]
  }

  /// The local id of `labels`, adding it the first time (0 for none).
  mutating func index(of labels: [String: String]) -> UInt64 {
    if labels.isEmpty { return 0 }
    if let existing = ids[labels] { return existing }
    let index = UInt64(sets.count)
    sets.append(labels)
    ids[labels] = index
    return index
  }

  /// A registry label id as this table's, through `cache` (valid for one
  /// drain). For running totals (`bounded`), per-request labels and the
  /// scope are dropped: kept, they would make the totals grow per request.
  mutating func local(
    _ raw: UInt64, bounded: Bool, cache: inout [UInt64: UInt64], registry: (UInt64) -> [String: String]
  ) -> UInt64 {
    if raw == 0 { return 0 }
    if let known = cache[raw] { return known }
    var labels = registry(raw)
    if bounded { for key in Self.perRequestKeys { labels[key] = nil } }
    let local = index(of: labels) | (bounded ? 0 : raw & 0xFFFF_FFFF_0000_0000)
    cache[raw] = local
    return local
  }

  /// Keeps the sets `keep` names (local indices, 0 always), in their order;
  /// returns old index → new index.
  mutating func retain(_ keep: Set<UInt64>) -> [UInt64: UInt64] {
    var renumbered: [UInt64: UInt64] = [0: 0]
    var kept = LabelSetTable()
    for (index, labels) in sets.enumerated() where index > 0 && keep.contains(UInt64(index)) {
      renumbered[UInt64(index)] = kept.index(of: labels)
    }
    self = kept
    return renumbered
  }
}
