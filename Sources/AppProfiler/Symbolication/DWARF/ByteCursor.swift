/// A forward reader over bytes of a mapped file that never reads outside
/// them: a read past the end returns 0 and sets `failed`, so a truncated or
/// corrupt section ends a parse early instead of faulting. Little-endian
/// only (the ELF files we read are ELFDATA2LSB).
struct ByteCursor {
  let bytes: UnsafeRawBufferPointer
  var offset: Int
  private(set) var failed = false

  init(_ bytes: UnsafeRawBufferPointer, offset: Int = 0) {
    self.bytes = bytes
    self.offset = offset
    if offset < 0 || offset > bytes.count { failed = true }
  }

  var atEnd: Bool { failed || offset >= bytes.count }
  var remaining: Int { failed ? 0 : bytes.count - offset }

  mutating func fail() { failed = true }

  private mutating func fixed<T: FixedWidthInteger>(_: T.Type) -> T {
    let size = MemoryLayout<T>.size
    guard !failed, offset >= 0, size <= bytes.count - offset else {
      failed = true
      return 0
    }
    defer { offset += size }
    return T(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self))
  }

  mutating func u8() -> UInt8 { fixed(UInt8.self) }
  mutating func u16() -> UInt16 { fixed(UInt16.self) }
  mutating func u32() -> UInt32 { fixed(UInt32.self) }
  mutating func u64() -> UInt64 { fixed(UInt64.self) }
  mutating func i8() -> Int8 { Int8(bitPattern: u8()) }

  /// 3 bytes (DW_FORM_strx3, addrx3).
  mutating func u24() -> UInt64 {
    let low = UInt64(u16())
    return low | UInt64(u8()) << 16
  }

  /// A 4- or 8-byte value: section offsets in 32- and 64-bit DWARF, addresses.
  mutating func unsigned(size: Int) -> UInt64 {
    switch size {
    case 1: return UInt64(u8())
    case 2: return UInt64(u16())
    case 4: return UInt64(u32())
    case 8: return u64()
    default:
      failed = true
      return 0
    }
  }

  mutating func uleb() -> UInt64 {
    var result: UInt64 = 0
    var shift: UInt64 = 0
    while true {
      let byte = u8()
      if failed { return 0 }
      if shift < 64 { result |= UInt64(byte & 0x7F) << shift }
      shift += 7
      if byte & 0x80 == 0 { return result }
    }
  }

  mutating func sleb() -> Int64 {
    var result: Int64 = 0
    var shift: Int64 = 0
    var byte: UInt8 = 0
    repeat {
      byte = u8()
      if failed { return 0 }
      if shift < 64 { result |= Int64(byte & 0x7F) << shift }
      shift += 7
    } while byte & 0x80 != 0
    if shift < 64 && byte & 0x40 != 0 { result |= -(Int64(1) << shift) }
    return result
  }

  /// The offset `length` bytes from here, nil when past the end (or when
  /// the length does not fit an Int).
  func offset(after length: UInt64) -> Int? {
    guard !failed, length <= UInt64(bytes.count - offset) else { return nil }
    return offset + Int(length)
  }

  mutating func skip(_ count: Int) {
    guard !failed, count >= 0, count <= bytes.count - offset else {
      failed = true
      return
    }
    offset += count
  }

  mutating func skip(_ count: UInt64) {
    guard count <= UInt64(Int.max) else {
      failed = true
      return
    }
    skip(Int(count))
  }

  /// A NUL-terminated string; empty (and `failed`) when unterminated.
  mutating func cString() -> String {
    guard !failed, offset < bytes.count else {
      failed = true
      return ""
    }
    var end = offset
    while end < bytes.count && bytes[end] != 0 { end += 1 }
    guard end < bytes.count else {
      failed = true
      return ""
    }
    defer { offset = end + 1 }
    return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[offset..<end]), as: UTF8.self)
  }

  /// The NUL-terminated string at `offset` of `bytes` (a string section).
  static func string(in bytes: UnsafeRawBufferPointer, at offset: UInt64) -> String {
    guard offset < UInt64(bytes.count) else { return "" }
    var cursor = ByteCursor(bytes, offset: Int(offset))
    return cursor.cString()
  }

  /// DWARF's initial length: (length, offset size 4 or 8).
  mutating func initialLength() -> (length: UInt64, offsetSize: Int) {
    let short = u32()
    if short == 0xFFFF_FFFF { return (u64(), 8) }
    return (UInt64(short), 4)
  }
}
