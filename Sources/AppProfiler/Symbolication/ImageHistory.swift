import CAppProfiler
import Synchronization

/// The images loaded now plus those unloaded recently, so a frame of a
/// plugin that was `dlclose`d between its sample and symbolication still
/// has a path and build-id (named from the file on disk, or `libfoo.so+0x…`).
///
/// Sessions call ``refresh()`` when they drain (every 10 ms): it costs one
/// `dl_iterate_phdr` step while nothing was loaded or unloaded.
final class ImageHistory: Sendable {
  static let shared = ImageHistory()

  /// Unloaded images kept, newest last. A process that loads plugins at new
  /// addresses forever must not grow without bound.
  static let unloadedLimit = 64

  private struct State {
    var loadCount: UInt64 = .max
    var current: ImageMap = ImageMap(images: [])
    var unloaded: [LoadedImage] = []
  }

  private let state = Mutex(State())

  /// Notes images loaded or unloaded since the last call.
  func refresh() {
    let count = cap_image_load_count()
    state.withLock { state in
      guard count != state.loadCount else { return }
      let now = ImageMap.current()
      let present = Set(now.images.map(\.key))
      for image in state.current.images where !present.contains(image.key) {
        state.unloaded.removeAll { $0.key == image.key }
        state.unloaded.append(image)
      }
      if state.unloaded.count > Self.unloadedLimit {
        state.unloaded.removeFirst(state.unloaded.count - Self.unloadedLimit)
      }
      state.current = now
      state.loadCount = count
    }
  }

  /// The images to symbolize with: the current ones, then recently unloaded
  /// ones whose addresses no current image took over.
  func symbolicationMap() -> ImageMap {
    refresh()
    return state.withLock { state in
      var images = state.current.images
      for image in state.unloaded.reversed() {
        let overlaps = image.executableSegments.contains { segment in
          images.contains { other in
            other.executableSegments.contains { $0.start < segment.end && segment.start < $0.end }
          }
        }
        if !overlaps { images.append(image) }
      }
      return ImageMap(images: images)
    }
  }
}
