@_spi(Internal) @_spi(MemoryReaders) import Runtime
import Synchronization

/// One source-level frame at an address.
struct SourceFrame: Sendable, Hashable {
  /// The symbol as stored (mangled for Swift); empty when unknown.
  var rawName: String
  /// Source file path, empty when the image has no line tables.
  var file: String
  var line: Int
  /// True for a function inlined into the next frame of the same address.
  var inlined: Bool
}

/// File:line and inlined frames for code addresses of this process.
///
/// One small seam, so the implementation can change without touching the
/// rest of symbolization: `DWARFSourceSymbolicator` (our own line tables and
/// inline trees) by default; `RuntimeSourceSymbolicator` (the toolchain's
/// `Runtime` module, Swift's backtracer, through its `@_spi(Internal)`
/// initializer that accepts addresses we supply) for DWARF ours declines.
/// SPI can change between toolchains: `SymbolizerTests` and
/// `DWARFSymbolicatorTests` pin what we rely on, and the ELF symbol tables
/// remain the fallback for every address this returns nothing for.
protocol SourceSymbolicator: Sendable {
  /// For each address (an instruction address: the interrupted PC, or a
  /// return address − 1), its frames innermost first — inlined callees,
  /// then the function that contains the address — or none when unknown.
  /// `images` are the loaded images the addresses were looked up in.
  /// `deadline` is checked between small batches of addresses; the ones not
  /// reached by then are nil.
  func sourceFrames(for addresses: [UInt64], images: ImageMap, deadline: ContinuousClock.Instant?) -> [[SourceFrame]?]

  /// The same without a deadline and off the caller's path: small batches,
  /// each after any caller of `sourceFrames` that is waiting. `deliver`
  /// receives each batch: the index of its first address and its frames.
  func sourceFramesLater(
    for addresses: [UInt64], images: ImageMap, deliver: @escaping @Sendable (Int, [[SourceFrame]]) -> Void)
}

extension SourceSymbolicator {
  func sourceFrames(for addresses: [UInt64], images: ImageMap) -> [[SourceFrame]] {
    sourceFrames(for: addresses, images: images, deadline: nil).map { $0 ?? [] }
  }
}

/// `SourceSymbolicator` over the toolchain's `Runtime` module.
final class RuntimeSourceSymbolicator: SourceSymbolicator {
  /// The Runtime's image map, kept while the set of loaded images is the
  /// same: its symbol caches hang off it, and capturing it anew each call
  /// makes every profile pay for re-reading the images.
  private let cachedImages = Mutex<(key: [String], map: Runtime.ImageMap)?>(nil)

  init() {}

  private func images(for key: [String]) -> Runtime.ImageMap {
    cachedImages.withLock { cached in
      if let cached, cached.key == key { return cached.map }
      // The checked reader (process_vm_readv): a library unloaded while the
      // Runtime reads its ELF headers is an error, not a SIGSEGV. The plain
      // `capture()` reads memory directly and crashed so.
      let map = Runtime.ImageMap.capture(using: LocalMemoryReader(), forProcess: nil)
      cached = (key, map)
      return map
    }
  }

  #if arch(x86_64)
  static let architecture = "x86_64"
  #elseif arch(arm64)
  static let architecture = "arm64"
  #else
  static let architecture = "unknown"
  #endif

  /// Addresses per call into the Runtime: small enough to check a deadline
  /// often (the Runtime re-runs an image's whole DWARF line program for
  /// every address, ~1.7 ms each in a 10,000-function library).
  static let batch = 64

  func sourceFrames(for addresses: [UInt64], images: ImageMap, deadline: ContinuousClock.Instant?) -> [[SourceFrame]?] {
    guard !addresses.isEmpty else { return [] }
    let imageKeys = images.images.map(\.key)
    // The symbolicator's image cache is per thread: always use the same one.
    return SymbolicationThread.shared.run { symbolicate(addresses, imageKeys: imageKeys, deadline: deadline) }
  }

  func sourceFramesLater(
    for addresses: [UInt64], images: ImageMap, deliver: @escaping @Sendable (Int, [[SourceFrame]]) -> Void
  ) {
    let imageKeys = images.images.map(\.key)
    for start in stride(from: 0, to: addresses.count, by: Self.batch) {
      let slice = Array(addresses[start..<min(start + Self.batch, addresses.count)])
      SymbolicationThread.shared.runLater { [self] in
        deliver(start, symbolicate(slice, imageKeys: imageKeys, deadline: nil).map { $0 ?? [] })
      }
    }
  }

  private func symbolicate(_ addresses: [UInt64], imageKeys: [String], deadline: ContinuousClock.Instant?) -> [[SourceFrame]?] {
    var result = [[SourceFrame]?](repeating: nil, count: addresses.count)
    let images = images(for: imageKeys)
    for start in stride(from: 0, to: addresses.count, by: Self.batch) {
      if let deadline, ContinuousClock.now >= deadline { break }
      let slice = Array(addresses[start..<min(start + Self.batch, addresses.count)])
      for index in start..<start + slice.count { result[index] = [] }
      let frames = slice.map { RichFrame<UInt64>.programCounter($0) }
      let backtrace = Backtrace(architecture: Self.architecture, frames: frames, images: images)
      guard
        let symbolicated = backtrace.symbolicated(
          with: images, options: [.showInlineFrames, .showSourceLocations, .useSymbolCache])
      else { continue }
      // Frames come out in input order; inlined ones precede the frame of
      // the function they were inlined into, all with the same captured PC.
      var index = 0
      for frame in symbolicated.frames {
        guard let pc = UInt64(frame.captured.originalProgramCounter) else { continue }
        while index < slice.count && slice[index] != pc { index += 1 }
        guard index < slice.count else { break }
        guard let symbol = frame.symbol else { continue }
        let location = symbol.sourceLocation
        result[start + index]!.append(
          SourceFrame(
            rawName: symbol.rawName, file: location?.path ?? "", line: location?.line ?? 0, inlined: frame.inlined))
      }
    }
    return result
  }
}
