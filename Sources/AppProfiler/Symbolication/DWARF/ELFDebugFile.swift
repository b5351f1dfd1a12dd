import AppProfilerFormats

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The DWARF sections of one ELF file, mapped read-only.
///
/// Sections are read in place from the mapping; a section compressed with
/// zlib (`SHF_COMPRESSED`, `ELFCOMPRESS_ZLIB`: an `Elf64_Chdr` of 24 bytes,
/// then the zlib stream) is inflated once into memory this object owns.
/// When the file itself has no `.debug_info`, the separate debug file named
/// by its build-id (`/usr/lib/debug/.build-id/ab/cdef….debug`, as Debian's
/// `-dbgsym` packages install them) is used instead.
///
/// Layouts read (ELF64, little-endian):
///   Elf64_Ehdr: e_shoff @40 (u64), e_shentsize @58, e_shnum @60, e_shstrndx @62 (u16)
///   Elf64_Shdr (64 B): sh_name @0, sh_type @4 (u32), sh_flags @8, sh_offset @24, sh_size @32 (u64)
final class ELFDebugFile: @unchecked Sendable {
  // Immutable after init.
  private let mapping: UnsafeRawBufferPointer
  private var inflated: [UnsafeMutableRawBufferPointer] = []
  private(set) var sections: [String: UnsafeRawBufferPointer] = [:]
  /// Why the file cannot be used, when `debugInfo` is nil (for the fallback decision).
  private(set) var declined: String?
  /// The GNU build-id of the file (`.note.gnu.build-id`), lowercase hex.
  private(set) var buildID: String?

  var debugInfo: UnsafeRawBufferPointer? { sections[".debug_info"] }
  var debugLine: UnsafeRawBufferPointer? { sections[".debug_line"] }

  static var empty: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: nil, count: 0) }
  func section(_ name: String) -> UnsafeRawBufferPointer { sections[name] ?? Self.empty }

  /// The file at `path`, or its separate debug file when `path` has no DWARF.
  static func find(path: String, buildID: String) -> ELFDebugFile? {
    if let file = ELFDebugFile(path: path), file.debugInfo != nil || file.declined != nil { return file }
    guard buildID.count > 2 else { return nil }
    let separate = "/usr/lib/debug/.build-id/\(buildID.prefix(2))/\(buildID.dropFirst(2)).debug"
    return ELFDebugFile(path: separate)
  }

  init?(path: String) {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var info = stat()
    guard fstat(fd, &info) == 0, info.st_size >= 64 else { return nil }
    let length = Int(info.st_size)
    guard let mapped = mmap(nil, length, PROT_READ, MAP_PRIVATE, fd, 0), mapped != MAP_FAILED else { return nil }
    mapping = UnsafeRawBufferPointer(start: mapped, count: length)
    readSections()
  }

  deinit {
    munmap(UnsafeMutableRawPointer(mutating: mapping.baseAddress), mapping.count)
    for buffer in inflated { munmap(buffer.baseAddress, buffer.count) }
  }

  /// Bytes of inflated sections this object holds.
  var inflatedBytes: Int { inflated.reduce(0) { $0 + $1.count } }

  /// The sections read (a compressed one is inflated only when listed).
  static let used: Set<String> = [
    ".debug_info", ".debug_abbrev", ".debug_line", ".debug_str", ".debug_line_str", ".debug_str_offsets",
    ".debug_addr", ".debug_ranges", ".debug_rnglists",
  ]

  /// Returns the mapped pages to the kernel (they are file-backed and clean:
  /// the next read faults them back in from the page cache). Inflated
  /// sections stay.
  func releasePages() {
    madvise(UnsafeMutableRawPointer(mutating: mapping.baseAddress), mapping.count, MADV_DONTNEED)
  }

  private func readSections() {
    let file = mapping
    var header = ByteCursor(file, offset: 0)
    guard file.count >= 64, file[0] == 0x7F, file[1] == 0x45, file[2] == 0x4C, file[3] == 0x46,
      file[4] == 2, file[5] == 1
    else { return }
    header.offset = 40
    let sectionOffset = header.u64()
    header.offset = 58
    let entrySize = Int(header.u16())
    let count = Int(header.u16())
    let namesIndex = Int(header.u16())
    guard !header.failed, entrySize >= 64, namesIndex < count, sectionOffset < UInt64(file.count) else { return }
    func sectionHeader(_ index: Int) -> (name: UInt32, flags: UInt64, offset: UInt64, size: UInt64, type: UInt32)? {
      var cursor = ByteCursor(file, offset: Int(sectionOffset) + index * entrySize)
      let name = cursor.u32()
      let type = cursor.u32()
      let flags = cursor.u64()
      cursor.skip(8)
      let offset = cursor.u64()
      let size = cursor.u64()
      guard !cursor.failed else { return nil }
      return (name, flags, offset, size, type)
    }
    guard let names = sectionHeader(namesIndex), names.offset <= UInt64(file.count),
      names.size <= UInt64(file.count) - names.offset
    else { return }
    let nameTable = UnsafeRawBufferPointer(rebasing: file[Int(names.offset)..<Int(names.offset + names.size)])
    for index in 0..<count {
      guard let section = sectionHeader(index) else { continue }
      let name = ByteCursor.string(in: nameTable, at: UInt64(section.name))
      if name == ".note.gnu.build-id", section.offset <= UInt64(file.count), section.size <= UInt64(file.count) - section.offset {
        buildID = Self.buildID(UnsafeRawBufferPointer(rebasing: file[Int(section.offset)..<Int(section.offset + section.size)]))
      }
      guard Self.used.contains(name), section.type != 8 /* SHT_NOBITS: stripped into a debug file */,
        section.offset <= UInt64(file.count), section.size <= UInt64(file.count) - section.offset
      else { continue }
      var bytes = UnsafeRawBufferPointer(rebasing: file[Int(section.offset)..<Int(section.offset + section.size)])
      if section.flags & 0x800 != 0 {  // SHF_COMPRESSED
        guard let data = inflate(bytes) else {
          declined = "\(name) is compressed in a way not read here"
          continue
        }
        bytes = UnsafeRawBufferPointer(data)
      }
      sections[name] = bytes
    }
  }

  /// An ELF note: namesz u32, descsz u32, type u32 (3: NT_GNU_BUILD_ID),
  /// the name ("GNU\0") padded to 4, the descriptor (the id).
  private static func buildID(_ note: UnsafeRawBufferPointer) -> String? {
    var cursor = ByteCursor(note)
    let nameSize = Int(cursor.u32())
    let descriptorSize = Int(cursor.u32())
    let type = cursor.u32()
    cursor.skip((nameSize + 3) & ~3)
    guard type == 3, !cursor.failed, descriptorSize > 0, descriptorSize <= cursor.remaining else { return nil }
    let hex: [Character] = Array("0123456789abcdef")
    var text = ""
    for index in cursor.offset..<cursor.offset + descriptorSize {
      text.append(hex[Int(note[index] >> 4)])
      text.append(hex[Int(note[index] & 0xF)])
    }
    return text
  }

  /// Inflates a compressed section (`Elf64_Chdr`: ch_type u32, reserved
  /// u32, ch_size u64, ch_addralign u64; ch_type 1 is zlib) straight into
  /// pages of its own (mmap: given back whole when the file is closed,
  /// never holes in the app's heap).
  private func inflate(_ section: UnsafeRawBufferPointer) -> UnsafeMutableRawBufferPointer? {
    var header = ByteCursor(section)
    let type = header.u32()
    header.skip(4)
    let size = header.u64()
    guard !header.failed, section.count > 24, type == 1, size > 0, size < 1 << 31,
      let pages = mmap(nil, Int(size), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), pages != MAP_FAILED
    else { return nil }
    let output = UnsafeMutableRawBufferPointer(start: pages, count: Int(size))
    guard Gzip.decompress(UnsafeRawBufferPointer(rebasing: section[24...]), exactlyInto: output) else {
      munmap(pages, Int(size))
      return nil
    }
    inflated.append(output)
    return output
  }
}
