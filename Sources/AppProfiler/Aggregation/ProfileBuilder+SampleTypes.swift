import AppProfilerFormats

// What each kind of sample measures, and the labels and type names a
// sample carries.
extension ProfileBuilder {
  /// What the samples of each kind this library records measure: the
  /// description a new profile type adds (no encoder changes with it).
  /// Names and units are pprof's and Go's, so `go tool pprof` and the
  /// continuous-profiling servers know them.
  static func sampleTypes(of mode: Profile.Mode) -> (
    sampleTypes: [Profile.ValueType], defaultSampleType: Int, periodType: Profile.ValueType
  ) {
    if mode == .heap {
      // Go's heap profile: its four types in its order, in-use space shown.
      return (
        [
          .init("alloc_objects", "count"), .init("alloc_space", "bytes"), .init("inuse_objects", "count"),
          .init("inuse_space", "bytes"),
        ], 3, .init("space", "bytes")
      )
    }
    if mode == .alloc {
      return (
        [.init("alloc_objects", "count"), .init("alloc_space", "bytes"), .init("samples", "count")], 1,
        .init("space", "bytes")
      )
    }
    if mode.isLock {
      // Go's block and mutex profiles: delay shown.
      return ([.init("contentions", "count"), .init("delay", "nanoseconds")], 1, .init("contentions", "count"))
    }
    let time = Profile.ValueType(mode.rawValue, "nanoseconds")
    return ([.init("samples", "count"), time], 1, time)
  }

  /// A sample's values, in the order of ``sampleTypes(of:)`` (the two are
  /// kept side by side so they cannot drift apart).
  static func values(of raw: RawSample, mode: Profile.Mode, period: UInt64) -> [Int64] {
    let objects = max(1, Int64(raw.objects.rounded()))
    if mode == .heap {
      // alloc_objects, alloc_space, inuse_objects, inuse_space (estimates).
      return [objects, Int64(raw.bytes.rounded()), Int64(raw.liveObjects.rounded()), Int64(raw.liveBytes.rounded())]
    }
    // alloc_objects, alloc_space (estimates), samples (raw).
    if mode == .alloc { return [objects, Int64(raw.bytes.rounded()), Int64(raw.count)] }
    // contentions, delay (estimates, as Go's).
    if mode.isLock { return [objects, Int64(raw.bytes.rounded())] }
    // samples, and the time they stand for.
    let count = Int64(raw.count)
    return [count, count &* Int64(clamping: period)]
  }

  /// The pprof numeric label `task`: the running Swift task (its
  /// AsyncTask address, an id within this profile), none on threads that ran
  /// no task.
  static func taskLabel(_ task: UInt64) -> [String: Int64] {
    task == 0 ? [:] : ["task": Int64(bitPattern: task)]
  }

  /// The name of the Swift type whose metadata swift_allocObject received.
  /// Classes get their qualified name; the runtime's own heap objects
  /// (boxes, closure contexts, tasks) a synthetic one.
  static func typeName(metadata: UInt64) -> String {
    guard metadata >= 4096, metadata % UInt64(MemoryLayout<UInt>.alignment) == 0,
      let pointer = UnsafeRawPointer(bitPattern: UInt(metadata))
    else { return "[Swift object]" }
    // MetadataKind: class metadata holds 0 (no Objective-C) or an isa
    // pointer (> 0x7FF); the others are small constants.
    let kind = pointer.load(as: UInt.self)
    switch kind {
    case 0, 0x800...:
      let type = unsafeBitCast(pointer, to: Any.Type.self)
      return _typeName(type, qualified: true)
    case 0x400: return "[Swift box or closure context]"
    case 0x500: return "[Swift generic box]"
    case 0x501: return "[Swift error]"
    case 0x502: return "[Swift task]"
    case 0x503: return "[Swift job]"
    default: return "[Swift object]"
    }
  }
}
