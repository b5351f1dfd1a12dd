import CAppProfiler
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Function symbols of one ELF file, from `.symtab` (every function, also the
/// executable's internal ones that `dladdr` cannot see) and `.dynsym`.
///
/// The file is mapped read-only for the table's lifetime and names are read
/// from its string tables on demand. Every read is bounds-checked: a
/// truncated or odd file yields fewer symbols, never a crash.
///
/// Layouts read here (ELF64, little-endian):
///   Elf64_Ehdr: e_shoff @40 (u64), e_shentsize @58, e_shnum @60, e_shstrndx @62 (u16)
///   Elf64_Shdr (64 B): sh_type @4 (u32), sh_offset @24, sh_size @32 (u64), sh_link @40 (u32), sh_entsize @56
///   Elf64_Sym  (24 B): st_name @0 (u32), st_info @4 (u8), st_shndx @6 (u16), st_value @8, st_size @16 (u64)
///   Elf64_Shdr sh_name @0 (u32, into the section names at e_shstrndx), sh_addr @16 (u64)
///   Elf64_Rela (24 B): r_offset @0, r_info @8 (symbol index in the high 32 bits), r_addend @16
///
/// PLT stubs have no symbol: they are named `<symbol>@plt`, as objdump
/// names them (``PLT``).
final class ELFSymbolTable: @unchecked Sendable {
  // Immutable after init; the mapping is only read.
  private let base: UnsafeRawPointer?
  private let length: Int
  private let addresses: [UInt64]
  private let sizes: [UInt64]
  private let nameOffsets: [Int]  // absolute file offsets of NUL-terminated names
  private let plt: PLT?
  /// The memory is a file mapping of ours (unmapped in deinit), not the vDSO.
  private let ownsMapping: Bool
  /// Names were read since the last ``releasePages()``.
  private let namesRead = Atomic<Bool>(false)

  /// Number of function symbols found.
  var count: Int { addresses.count }

  init?(path: String) {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var info = stat()
    guard fstat(fd, &info) == 0, info.st_size >= 64 else { return nil }
    let length = Int(info.st_size)
    guard let mapped = mmap(nil, length, PROT_READ, MAP_PRIVATE, fd, 0), mapped != MAP_FAILED else {
      return nil
    }
    let base = UnsafeRawPointer(mapped)
    self.base = base
    self.length = length
    let symbols = ELFSymbolTable.readFunctions(UnsafeRawBufferPointer(start: base, count: length))
    self.addresses = symbols.map(\.address)
    self.sizes = symbols.map(\.size)
    self.nameOffsets = symbols.map(\.nameOffset)
    self.plt = PLT(UnsafeRawBufferPointer(start: base, count: length))
    self.ownsMapping = true
    FreedMemory.noteTransientWork()
    // Reading the tables touched every page of .symtab: clean file pages,
    // returned now (names are read again, a page at a time, when asked).
    madvise(mapped, length, MADV_DONTNEED)
  }

  /// The vDSO's symbols (`__vdso_clock_gettime`, …), read from the kernel's
  /// image in this process's memory: it has no file on disk. Its ELF header
  /// is at `getauxval(AT_SYSINFO_EHDR)`; its extent is the `[vdso]` line of
  /// /proc/self/maps, and every read stays inside it. The vDSO is never
  /// unmapped.
  init?(vdso: Void) {
    let header = cap_vdso_base()
    guard header != 0, let extent = Self.vdsoMapping(), extent.lowerBound == header,
      let base = UnsafeRawPointer(bitPattern: UInt(header))
    else { return nil }
    let length = Int(extent.upperBound - extent.lowerBound)
    self.base = base
    self.length = length
    let symbols = ELFSymbolTable.readFunctions(UnsafeRawBufferPointer(start: base, count: length))
    guard !symbols.isEmpty else { return nil }
    self.addresses = symbols.map(\.address)
    self.sizes = symbols.map(\.size)
    self.nameOffsets = symbols.map(\.nameOffset)
    self.plt = nil
    self.ownsMapping = false
  }

  /// `[start, end)` of the `[vdso]` mapping, e.g.
  /// `7ffd2b5f4000-7ffd2b5f6000 r-xp 00000000 00:00 0   [vdso]`.
  private static func vdsoMapping() -> Range<UInt64>? {
    let fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var text: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
      let count = read(fd, &chunk, chunk.count)
      if count <= 0 { break }
      text += chunk[0..<count]
    }
    for line in String(decoding: text, as: UTF8.self).split(separator: "\n") where line.hasSuffix("[vdso]") {
      let range = line.split(separator: " ").first?.split(separator: "-") ?? []
      guard range.count == 2, let start = UInt64(range[0], radix: 16), let end = UInt64(range[1], radix: 16), end > start
      else { return nil }
      return start..<end
    }
    return nil
  }

  deinit {
    if ownsMapping, let base { munmap(UnsafeMutableRawPointer(mutating: base), length) }
  }

  /// Gives back the file pages that reading names brought in (clean pages
  /// of this table's own read-only mapping: they stay in the page cache and
  /// come back on the next read). The names asked are cached by the
  /// symbolizer, so a service symbolizing every window (flight recorder,
  /// exporters) does not keep its images' string tables resident.
  func releasePages() {
    guard ownsMapping, let base, namesRead.exchange(false, ordering: .relaxed) else { return }
    madvise(UnsafeMutableRawPointer(mutating: base), length, MADV_DONTNEED)
  }

  /// The function containing `address` (an ELF virtual address, i.e. runtime
  /// address minus the load bias) and the offset into it.
  func lookup(_ address: UInt64) -> (name: String, offset: UInt64)? {
    if let plt, let (index, offset) = plt.stub(at: address), plt.nameOffsets[index] >= 0 {
      return (name(at: plt.nameOffsets[index]) + "@plt", offset)
    }
    let low = addresses.countNotAfter(address) { $0 }
    guard low > 0 else { return nil }
    let index = low - 1
    let offset = address - addresses[index]
    // Sized symbols must contain the address; a size-0 symbol (hand-written
    // assembly) is accepted within 4 KiB.
    if sizes[index] > 0 ? offset >= sizes[index] : offset >= 4096 { return nil }
    return (name(at: nameOffsets[index]), offset)
  }

  /// ELF virtual addresses, 16-byte aligned, past the end of a sized
  /// function and before the next symbol: code the compiler left without
  /// a symbol may be there (tests look for it).
  func unsymbolizedGaps(limit: Int) -> [UInt64] {
    var gaps: [UInt64] = []
    for index in addresses.indices.dropLast() where sizes[index] > 0 && gaps.count < limit {
      let start = (addresses[index] &+ sizes[index] &+ 15) & ~15
      if start < addresses[index + 1] { gaps.append(start) }
    }
    return gaps
  }

  /// ELF virtual address of the first function whose name satisfies `matches`.
  func address(ofFirst matches: (String) -> Bool) -> UInt64? {
    for index in addresses.indices where matches(name(at: nameOffsets[index])) {
      return addresses[index]
    }
    return nil
  }

  /// ELF virtual addresses [start, start + size) of the first sized function
  /// whose name satisfies `matches`.
  func range(ofFirst matches: (String) -> Bool) -> Range<UInt64>? {
    for index in addresses.indices where sizes[index] > 0 && matches(name(at: nameOffsets[index])) {
      return addresses[index]..<(addresses[index] &+ sizes[index])
    }
    return nil
  }

  private func name(at offset: Int) -> String {
    guard let base, offset >= 0, offset < length else { return "" }
    namesRead.store(true, ordering: .relaxed)
    var end = offset
    while end < length && base.load(fromByteOffset: end, as: UInt8.self) != 0 { end += 1 }
    return String(decoding: UnsafeRawBufferPointer(start: base + offset, count: end - offset), as: UTF8.self)
  }

  struct Symbol {
    var address: UInt64
    var size: UInt64
    var nameOffset: Int
  }

  /// All STT_FUNC / STT_GNU_IFUNC symbols with a non-zero address, sorted by
  /// address (duplicates at one address keep the first, preferring `.symtab`).
  static func readFunctions(_ file: UnsafeRawBufferPointer) -> [Symbol] {
    let bytes = ELFBytes(file)
    let (u16, u32, u64) = (bytes.u16, bytes.u32, bytes.u64)
    // \x7fELF, ELFCLASS64, little-endian.
    guard file.count >= 64, file[0] == 0x7F, file[1] == 0x45, file[2] == 0x4C, file[3] == 0x46,
      file[4] == 2, file[5] == 1,
      let sectionOffset = u64(40), let entrySize = u16(58), let sectionCount = u16(60),
      entrySize >= 64, sectionOffset < UInt64(file.count)
    else { return [] }

    var symbols: [Symbol] = []
    // .symtab (2) first so its names win over .dynsym (11) duplicates.
    for wantedType: UInt32 in [2, 11] {
      for section in 0..<Int(sectionCount) {
        let header = Int(sectionOffset) + section * Int(entrySize)
        guard let type = u32(header + 4), type == wantedType,
          let offset = u64(header + 24), let size = u64(header + 32), let link = u32(header + 40),
          let symbolSize = u64(header + 56), symbolSize >= 24,
          offset <= UInt64(file.count), size <= UInt64(file.count) - offset
        else { continue }
        let stringsHeader = Int(sectionOffset) + Int(link) * Int(entrySize)
        guard Int(link) < Int(sectionCount), let stringsOffset = u64(stringsHeader + 24),
          let stringsSize = u64(stringsHeader + 32), stringsOffset <= UInt64(file.count),
          stringsSize <= UInt64(file.count) - stringsOffset
        else { continue }
        let count = Int(size / symbolSize)
        symbols.reserveCapacity(symbols.count + count)
        for index in 0..<count {
          let symbol = Int(offset) + index * Int(symbolSize)
          guard let nameIndex = u32(symbol), let value = u64(symbol + 8), let length = u64(symbol + 16)
          else { break }
          let kind = file[symbol + 4] & 0xF
          guard kind == 2 || kind == 10, value != 0, UInt64(nameIndex) < stringsSize else { continue }
          symbols.append(Symbol(address: value, size: length, nameOffset: Int(stringsOffset) + Int(nameIndex)))
        }
      }
    }
    // Stable sort keeps .symtab's entry first among equal addresses.
    let sorted = symbols.enumerated().sorted {
      $0.element.address != $1.element.address ? $0.element.address < $1.element.address : $0.offset < $1.offset
    }.map(\.element)
    var unique: [Symbol] = []
    unique.reserveCapacity(sorted.count)
    for symbol in sorted where unique.last?.address != symbol.address {
      unique.append(symbol)
    }
    return unique
  }

  /// The stubs of the procedure linkage table (x86_64), 16 bytes each, in
  /// `.plt.sec` (IBT) or else `.plt`. Each stub jumps through its GOT slot
  /// (`jmp *disp32(%rip)`, `ff 25`, after an `endbr64` and a `bnd` prefix
  /// in `.plt.sec`); the `.rela.plt` entry for that slot names the stub, as
  /// binutils' synthetic `@plt` symbols do. Entries that decode to no slot
  /// (`.plt`'s header, IRELATIVE stubs) stay unnamed.
  struct PLT {
    var start: UInt64
    /// Per stub, the file offset of its symbol's name; -1: unnamed.
    var nameOffsets: [Int]

    func stub(at address: UInt64) -> (index: Int, offset: UInt64)? {
      guard address >= start else { return nil }
      let index = (address - start) / 16
      guard index < UInt64(nameOffsets.count) else { return nil }
      return (Int(index), (address - start) % 16)
    }

    init?(_ file: UnsafeRawBufferPointer) {
      #if arch(x86_64)
      let bytes = ELFBytes(file)
      let (u16, u32, u64) = (bytes.u16, bytes.u32, bytes.u64)
      guard file.count >= 64, file[0] == 0x7F, file[4] == 2, file[5] == 1, let sectionOffset = u64(40),
        let entrySize = u16(58), let sectionCount = u16(60), let namesIndex = u16(62), entrySize >= 64,
        namesIndex < sectionCount, sectionOffset < UInt64(file.count)
      else { return nil }
      func header(_ index: Int) -> Int { Int(sectionOffset) + index * Int(entrySize) }
      guard let namesOffset = u64(header(Int(namesIndex)) + 24), namesOffset < UInt64(file.count) else { return nil }
      func sectionName(_ index: Int) -> String? {
        guard let name = u32(header(index)) else { return nil }
        let start = Int(namesOffset) + Int(name)
        guard start < file.count else { return nil }
        var end = start
        while end < file.count && end - start < 32 && file[end] != 0 { end += 1 }
        return String(decoding: UnsafeRawBufferPointer(rebasing: file[start..<end]), as: UTF8.self)
      }
      var sections: [String: Int] = [:]
      for index in 0..<Int(sectionCount) {
        if let name = sectionName(index), [".plt", ".plt.sec", ".rela.plt"].contains(name) { sections[name] = index }
      }
      guard let relocations = sections[".rela.plt"], let relocationsOffset = u64(header(relocations) + 24),
        let relocationsSize = u64(header(relocations) + 32), let symbolsIndex = u32(header(relocations) + 40),
        relocationsOffset <= UInt64(file.count), relocationsSize <= UInt64(file.count) - relocationsOffset,
        Int(symbolsIndex) < Int(sectionCount), let symbolsOffset = u64(header(Int(symbolsIndex)) + 24),
        let symbolsSize = u64(header(Int(symbolsIndex)) + 32), let stringsIndex = u32(header(Int(symbolsIndex)) + 40),
        Int(stringsIndex) < Int(sectionCount), let stringsOffset = u64(header(Int(stringsIndex)) + 24),
        let stringsSize = u64(header(Int(stringsIndex)) + 32),
        let stubs = sections[".plt.sec"] ?? sections[".plt"], let address = u64(header(stubs) + 16),
        let stubsOffset = u64(header(stubs) + 24), let stubsSize = u64(header(stubs) + 32),
        stubsOffset <= UInt64(file.count), stubsSize <= UInt64(file.count) - stubsOffset
      else { return nil }
      // GOT slot → the name of the symbol bound there.
      var slots: [UInt64: Int] = [:]
      for index in 0..<Int(relocationsSize / 24) {
        let entry = Int(relocationsOffset) + index * 24
        guard let slot = u64(entry), let info = u64(entry + 8) else { break }
        let symbol = info >> 32
        guard symbol > 0, (symbol + 1) * 24 <= symbolsSize, let name = u32(Int(symbolsOffset) + Int(symbol) * 24),
          UInt64(name) < stringsSize
        else { continue }
        slots[slot] = Int(stringsOffset) + Int(name)
      }
      guard !slots.isEmpty else { return nil }
      var names: [Int] = []
      for stub in 0..<Int(stubsSize / 16) {
        let offset = Int(stubsOffset) + stub * 16
        var name = -1
        for at in [0, 4, 5] where offset + at + 6 <= file.count && file[offset + at] == 0xFF && file[offset + at + 1] == 0x25 {
          guard let displacement = u32(offset + at + 2) else { break }
          let slot = address &+ UInt64(stub * 16 + at + 6) &+ UInt64(bitPattern: Int64(Int32(bitPattern: displacement)))
          name = slots[slot] ?? -1
          break
        }
        names.append(name)
      }
      start = address
      nameOffsets = names
      #else
      return nil
      #endif
    }
  }
}

/// Bounds-checked little-endian reads of an ELF file in memory: nil past
/// its end, so a truncated or odd file gives fewer symbols, never a crash.
struct ELFBytes {
  let file: UnsafeRawBufferPointer

  init(_ file: UnsafeRawBufferPointer) { self.file = file }

  func u16(_ offset: Int) -> UInt16? { load(offset, as: UInt16.self) }
  func u32(_ offset: Int) -> UInt32? { load(offset, as: UInt32.self) }
  func u64(_ offset: Int) -> UInt64? { load(offset, as: UInt64.self) }

  private func load<T: FixedWidthInteger>(_ offset: Int, as type: T.Type) -> T? {
    offset >= 0 && offset <= file.count - MemoryLayout<T>.size
      ? file.loadUnaligned(fromByteOffset: offset, as: T.self) : nil
  }
}
