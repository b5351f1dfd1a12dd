import CAppProfiler

// What a task off any thread shows as its frames: its await chain's
// resume points in known code, its async-let children, and the marker
// that says why it waits.
extension TaskWall {
  /// Resume addresses (entries, as stored) in known code; refreshes the
  /// image map once a second when one is in none.
  static func codeFrames(_ addresses: [UInt64], _ state: inout State, now: UInt64) -> [UInt64] {
    var images = state.images!
    if addresses.contains(where: { images.lookup($0) == nil }) && now &- state.imagesAt > 1_000_000_000 {
      images = ImageMap.current()
      state.images = images
      state.imagesAt = now
    }
    return addresses.filter { images.lookup($0) != nil }
  }

  static func asyncLetChildren(_ bytes: [UInt8], layout: TaskLayout) -> [UInt64] {
    var children: [UInt64] = []
    var record = bytes.word(at: TaskLayout.statusRecord)
    for _ in 0..<TaskDump.maxStatusRecords where record != 0 {
      guard let flags = TaskMemory.word(record), let next = TaskMemory.word(record &+ 8) else { break }
      if flags & 0xFF == layout.childRecordKind, var child = TaskMemory.word(record &+ 16) {
        while child != 0 && children.count < 10_000 {
          children.append(child)
          guard let sibling = TaskMemory.word(child &+ UInt64(layout.taskSize) &+ 8) else { break }
          child = sibling
        }
      }
      record = next
    }
    return children
  }

  static func marker(
    _ bytes: [UInt8], flags: UInt32, layout: TaskLayout, leaf: UInt64?, state: inout State, images: ImageMap
  ) -> SyntheticFrame {
    if flags & TaskLayout.enqueued != 0 || layout.entryAdapters.contains(bytes.word(at: TaskLayout.resumeFunction)) {
      return .enqueued
    }
    switch TaskDump.waitingOn(bytes, flags: flags) {
    case "task": return .suspendedTask
    case "group": return .suspendedGroup
    case "actor", "executor": return .enqueued
    default: break
    }
    if let leaf, isSleep(leaf, &state, images: images) { return .suspendedSleep }
    return TaskDump.waitingOn(bytes, flags: flags) == "continuation" ? .suspendedContinuation : .suspendedOther
  }

  /// Whether `leaf` is in `Task.sleep`'s code (names resolved once).
  static func isSleep(_ leaf: UInt64, _ state: inout State, images: ImageMap) -> Bool {
    if let known = state.sleeps[leaf] { return known }
    let name = Symbolizer.shared.resolve([leaf], in: images, sourceLocations: false).first?.functions.last?.name ?? ""
    state.sleeps[leaf] = Profiler.isSleep(name)
    return state.sleeps[leaf]!
  }
}
