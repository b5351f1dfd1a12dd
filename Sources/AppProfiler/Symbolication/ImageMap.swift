import CAppProfiler

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// One loaded ELF image, from `dl_iterate_phdr`.
struct LoadedImage: Sendable, Hashable {
  /// Path on disk; the executable's empty name is replaced by `/proc/self/exe`'s target.
  var path: String
  /// Load bias: runtime address = bias + ELF virtual address.
  var bias: UInt64
  /// Executable PT_LOAD segments as runtime [start, end) plus their file offset.
  var executableSegments: [Segment]
  /// GNU build-id, lowercase hex, from the image's PT_NOTE segments in memory.
  var buildID: String
  /// True for the vDSO, which has no file on disk.
  var isVDSO: Bool
  /// Runtime address of `.eh_frame_hdr` (PT_GNU_EH_FRAME), 0 when absent.
  var ehFrameHeader: UInt64 = 0
  /// Every PT_LOAD segment as runtime [start, end): reads of unwind data stay inside.
  var loadSegments: [Range<UInt64>] = []
  /// The main executable or the vDSO: never unloaded, read without a pin.
  var isPermanent = false

  struct Segment: Sendable, Hashable {
    var start: UInt64
    var end: UInt64
    var fileOffset: UInt64
  }

  /// Identity across sessions: same file at the same address.
  var key: String { "\(path)@\(String(bias, radix: 16))" }
}

extension LoadedImage {
  /// Runs `body` while the image is certain to stay mapped (a `dlclose` by
  /// another thread is deferred until `body` returns); nil without calling
  /// `body` when the image is no longer loaded at this address.
  func whileLoaded<T>(_ body: () -> T) -> T? {
    if isPermanent { return body() }
    guard let handle = cap_image_pin(path, bias) else { return nil }
    defer { cap_image_unpin(handle) }
    return body()
  }
}

/// The images of this process, sorted by address, for address → image lookup.
struct ImageMap: Sendable {
  private(set) var images: [LoadedImage]
  /// (start, end, image index, segment index), sorted by start.
  private var ranges: [(start: UInt64, end: UInt64, image: Int, segment: Int)]

  init(images: [LoadedImage]) {
    self.images = images
    var ranges: [(start: UInt64, end: UInt64, image: Int, segment: Int)] = []
    for (imageIndex, image) in images.enumerated() {
      for (segmentIndex, segment) in image.executableSegments.enumerated() {
        ranges.append((segment.start, segment.end, imageIndex, segmentIndex))
      }
    }
    ranges.sort { $0.start < $1.start }
    self.ranges = ranges
  }

  /// The image and segment holding `address`.
  func lookup(_ address: UInt64) -> (image: Int, segment: Int)? {
    var low = 0
    var high = ranges.count
    while low < high {
      let mid = (low + high) / 2
      if ranges[mid].end <= address {
        low = mid + 1
      } else if ranges[mid].start > address {
        high = mid
      } else {
        return (ranges[mid].image, ranges[mid].segment)
      }
    }
    return nil
  }

  /// Reads the current images with `dl_iterate_phdr`.
  static func current() -> ImageMap {
    final class Collector {
      var images: [LoadedImage] = []
    }
    let collector = Collector()
    let executablePath = Self.executablePath()
    withExtendedLifetime(collector) {
      let context = Unmanaged.passUnretained(collector).toOpaque()
      cap_iterate_images({ info, context in
        guard let info, let context else { return 0 }
        let collector = Unmanaged<Collector>.fromOpaque(context).takeUnretainedValue()
        let entry = info.pointee
        let name = entry.name.map { String(cString: $0) } ?? ""
        guard let headers = entry.program_headers else { return 0 }
        var segments: [LoadedImage.Segment] = []
        var loads: [Range<UInt64>] = []
        var ehFrameHeader: UInt64 = 0
        var buildID = ""
        // Elf64_Phdr (56 B): p_type u32 @0, p_flags u32 @4, p_offset @8, p_vaddr @16, p_memsz @40.
        for index in 0..<Int(entry.program_header_count) {
          let header = headers + index * 56
          let type = header.loadUnaligned(fromByteOffset: 0, as: UInt32.self)
          let flags = header.loadUnaligned(fromByteOffset: 4, as: UInt32.self)
          let fileOffset = header.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
          let virtualAddress = header.loadUnaligned(fromByteOffset: 16, as: UInt64.self)
          let memorySize = header.loadUnaligned(fromByteOffset: 40, as: UInt64.self)
          if type == 1 {  // PT_LOAD
            let start = entry.bias &+ virtualAddress
            loads.append(start..<(start &+ memorySize))
            if (flags & 1) != 0 {  // PF_X
              segments.append(.init(start: start, end: start &+ memorySize, fileOffset: fileOffset))
            }
          } else if type == 0x6474_E550 {  // PT_GNU_EH_FRAME
            ehFrameHeader = entry.bias &+ virtualAddress
          } else if type == 4 && buildID.isEmpty,  // PT_NOTE
            let start = UnsafeRawPointer(bitPattern: UInt(entry.bias &+ virtualAddress))
          {
            buildID = ImageMap.buildID(notes: UnsafeRawBufferPointer(start: start, count: Int(memorySize)))
          }
        }
        guard !segments.isEmpty else { return 0 }
        collector.images.append(
          LoadedImage(
            path: name, bias: entry.bias, executableSegments: segments, buildID: buildID,
            isVDSO: name.hasPrefix("linux-vdso") || name.hasPrefix("linux-gate"),
            ehFrameHeader: ehFrameHeader, loadSegments: loads))
        return 0
      }, context)
    }
    var images = collector.images
    for index in images.indices where images[index].path.isEmpty {
      images[index].path = executablePath
      images[index].isPermanent = true
    }
    for index in images.indices where images[index].isVDSO { images[index].isPermanent = true }
    return ImageMap(images: images)
  }

  static func executablePath() -> String {
    var buffer = [CChar](repeating: 0, count: 4096)
    let length = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    guard length > 0 else { return "/proc/self/exe" }
    return String(decoding: buffer[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
  }

  /// Finds NT_GNU_BUILD_ID in a note segment. Note layout: namesz, descsz,
  /// type (4 bytes each), name padded to 4, desc padded to 4.
  static func buildID(notes: UnsafeRawBufferPointer) -> String {
    var offset = 0
    while offset + 12 <= notes.count {
      let nameSize = Int(notes.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
      let descSize = Int(notes.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self))
      let type = notes.loadUnaligned(fromByteOffset: offset + 8, as: UInt32.self)
      let nameStart = offset + 12
      let descStart = nameStart + ((nameSize + 3) & ~3)
      let next = descStart + ((descSize + 3) & ~3)
      guard next <= notes.count, nameSize <= 64, descSize <= 1024 else { break }
      if type == 3 && nameSize == 4 && notes[nameStart] == 0x47 && notes[nameStart + 1] == 0x4E
        && notes[nameStart + 2] == 0x55
      {
        var hex = ""
        for index in descStart..<(descStart + descSize) {
          let byte = notes[index]
          hex += String(byte >> 4, radix: 16) + String(byte & 15, radix: 16)
        }
        return hex
      }
      offset = next
    }
    return ""
  }
}
