import Synchronization

/// `SourceSymbolicator` that reads DWARF itself: line tables and inline
/// trees built once per compilation unit (`DWARFImage`), cached per image
/// by build-id under a memory budget. Images whose debug sections it cannot
/// read (compressed other than with zlib) go to the toolchain symbolicator;
/// images without DWARF get nothing (their ELF symbols name them).
final class DWARFSourceSymbolicator: SourceSymbolicator {
  private struct State {
    /// By build-id (else path): nil when the file has no usable DWARF.
    var images: [String: DWARFImage?] = [:]
    /// Images whose DWARF only the toolchain symbolicator reads.
    var declined: Set<String> = []
    var tick: UInt64 = 0
  }

  private let state = Mutex(State())
  private let fallback: any SourceSymbolicator
  /// Parsed tables kept between profiles. 8 MiB holds every unit of a
  /// 50 MB debug build touched by a busy profile (the Hummingbird example:
  /// 2.1 MiB after a profile of all its threads); past it, the units used
  /// least recently are dropped and rebuilt when asked again (a unit of
  /// 10,000 functions rebuilds in ~10 ms).
  let budget: Int

  init(budget: Int = 8 << 20, fallback: any SourceSymbolicator = RuntimeSourceSymbolicator()) {
    self.budget = budget
    self.fallback = fallback
  }

  /// Bytes of parsed tables held now.
  var footprint: Int {
    state.withLock { state in state.images.values.reduce(0) { $0 + ($1?.footprint ?? 0) } }
  }

  func sourceFrames(for addresses: [UInt64], images: ImageMap, deadline: ContinuousClock.Instant?) -> [[SourceFrame]?] {
    var result = [[SourceFrame]?](repeating: nil, count: addresses.count)
    var forFallback: [Int] = []
    state.withLock { state in
      state.tick += 1
      let tick = state.tick
      var used: Set<ObjectIdentifier> = []
      var usedImages: [DWARFImage] = []
      for (position, address) in addresses.enumerated() {
        if position % 16 == 0, let deadline, ContinuousClock.now >= deadline { break }
        guard let (imageIndex, _) = images.lookup(address) else {
          result[position] = []
          continue
        }
        let image = images.images[imageIndex]
        let key = image.buildID.isEmpty ? image.key : image.buildID
        if state.declined.contains(key) {
          forFallback.append(position)
          continue
        }
        let dwarf: DWARFImage?
        if let known = state.images[key] {
          dwarf = known
        } else {
          dwarf = Self.open(image)
          state.images[key] = dwarf
          if dwarf == nil, !image.isVDSO, let file = ELFDebugFile.find(path: image.path, buildID: image.buildID),
            file.declined != nil
          {
            state.declined.insert(key)
            forFallback.append(position)
            continue
          }
        }
        guard let dwarf else {
          result[position] = []
          continue
        }
        if used.insert(ObjectIdentifier(dwarf)).inserted { usedImages.append(dwarf) }
        result[position] = dwarf.frames(at: address &- image.bias, tick: tick) ?? []
      }
      for dwarf in usedImages { dwarf.file.releasePages() }
      Self.enforce(budget: budget, &state)
    }
    if !forFallback.isEmpty {
      let frames = fallback.sourceFrames(for: forFallback.map { addresses[$0] }, images: images, deadline: deadline)
      for (position, frames) in zip(forFallback, frames) { result[position] = frames }
    }
    return result
  }

  func sourceFramesLater(
    for addresses: [UInt64], images: ImageMap, deliver: @escaping @Sendable (Int, [[SourceFrame]]) -> Void
  ) {
    let batch = 256
    for start in stride(from: 0, to: addresses.count, by: batch) {
      let slice = Array(addresses[start..<min(start + batch, addresses.count)])
      SymbolicationThread.shared.runLater { [self] in
        deliver(start, sourceFrames(for: slice, images: images, deadline: nil).map { $0 ?? [] })
      }
    }
  }

  /// Drops every parsed table (tests measure cold symbolication with it).
  func reset() {
    state.withLock { $0 = State() }
  }

  private static func open(_ image: LoadedImage) -> DWARFImage? {
    guard !image.isVDSO, let file = ELFDebugFile.find(path: image.path, buildID: image.buildID) else { return nil }
    // A file replaced on disk since it was loaded describes other code.
    if !image.buildID.isEmpty, let onDisk = file.buildID, onDisk != image.buildID { return nil }
    let dwarf = DWARFImage(file: file)
    FreedMemory.noteTransientWork()
    file.releasePages()
    return dwarf
  }

  /// Evicts the least recently used units until at most half the budget
  /// is held; when that is not enough (the inflated sections of a
  /// compressed debug file, 10 MB for glibc's), whole images are closed,
  /// largest first, and opened again when next needed.
  private static func enforce(budget: Int, _ state: inout State) {
    let images = state.images.values.compactMap { $0 }
    var total = images.reduce(0) { $0 + $1.footprint }
    guard total > budget else { return }
    let uses = images.flatMap { image in image.parsed.values.map(\.lastUse) }.sorted()
    for threshold in uses {
      for image in images { total -= image.evict(usedBefore: threshold + 1) }
      if total <= budget / 2 { return }
    }
    for (key, image) in state.images.compactMap({ key, image in image.map { (key, $0) } })
      .sorted(by: { $0.1.footprint > $1.1.footprint })
    {
      guard total > budget / 2 else { return }
      total -= image.footprint
      state.images[key] = nil
    }
  }
}
