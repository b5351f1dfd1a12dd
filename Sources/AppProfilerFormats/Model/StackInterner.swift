/// Adds each distinct stack to a profile once, for decoders that meet the
/// same stack many times.
struct StackInterner {
  private var index: [[Int]: Int] = [:]

  /// The index of `stack` in `profile.stacks`, appending it the first time.
  mutating func intern(_ stack: [Int], in profile: inout Profile) -> Int {
    if let existing = index[stack] { return existing }
    profile.stacks.append(stack)
    index[stack] = profile.stacks.count - 1
    return profile.stacks.count - 1
  }
}
