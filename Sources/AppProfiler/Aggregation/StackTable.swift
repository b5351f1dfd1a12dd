/// Deduplicated stacks (addresses, leaf first): each distinct stack is
/// stored once and named by its index, the order it was first seen.
struct StackTable: Sendable {
  private(set) var stacks: [[UInt64]] = []
  private var ids: [[UInt64]: Int32] = [:]

  /// The id of `frames`, adding it the first time.
  mutating func id(_ frames: [UInt64]) -> Int32 {
    if let existing = ids[frames] { return existing }
    let id = Int32(stacks.count)
    stacks.append(frames)
    ids[frames] = id
    return id
  }

  subscript(id: Int32) -> [UInt64] { stacks[Int(id)] }

  var count: Int { stacks.count }

  /// Keeps the stacks `keep` names, in their order; returns old id → new id.
  mutating func retain(_ keep: Set<Int32>) -> [Int32: Int32] {
    var renumbered: [Int32: Int32] = [:]
    var kept = StackTable()
    for (index, frames) in stacks.enumerated() where keep.contains(Int32(index)) {
      renumbered[Int32(index)] = kept.id(frames)
    }
    self = kept
    return renumbered
  }
}
