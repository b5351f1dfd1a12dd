import CAppProfiler

/// The records a drain wrote (`cap_session_drain`, `cap_alloc_drain`,
/// `cap_lock_drain`): each a `cap_sample_header`, read as the struct Swift
/// imports from CAppProfiler.h (no byte offsets restated here), then
/// `depth` frames of 8 bytes, leaf first. A record cut short by the end of
/// the buffer ends the sequence.
struct SampleRecords: Sequence, IteratorProtocol {
  struct Record {
    var header: cap_sample_header
    /// The record's frames, `header.depth` × 8 bytes.
    var frames: UnsafeRawBufferPointer

    var depth: Int { Int(header.depth) }

    func frame(_ index: Int) -> UInt64 { frames.loadUnaligned(fromByteOffset: index * 8, as: UInt64.self) }

    func has(_ flag: Int) -> Bool { header.flags & UInt16(flag) != 0 }
  }

  private let buffer: UnsafeRawBufferPointer
  private var offset = 0

  init(_ buffer: UnsafeRawBufferPointer) { self.buffer = buffer }

  mutating func next() -> Record? {
    let headerSize = MemoryLayout<cap_sample_header>.size
    guard offset + headerSize <= buffer.count else { return nil }
    let header = buffer.loadUnaligned(fromByteOffset: offset, as: cap_sample_header.self)
    let start = offset + headerSize
    let end = start + Int(header.depth) * 8
    guard end <= buffer.count else { return nil }
    offset = end
    return Record(header: header, frames: UnsafeRawBufferPointer(rebasing: buffer[start..<end]))
  }

  /// `records` written as a drain writes them (tests, benchmarks).
  static func encode(_ records: [(header: cap_sample_header, frames: [UInt64])]) -> [UInt8] {
    var bytes: [UInt8] = []
    for (header, frames) in records {
      var header = header
      header.depth = UInt16(frames.count)
      withUnsafeBytes(of: &header) { bytes.append(contentsOf: $0) }
      for frame in frames { withUnsafeBytes(of: frame) { bytes.append(contentsOf: $0) } }
    }
    return bytes
  }
}
