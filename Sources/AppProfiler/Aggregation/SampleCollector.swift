import CAppProfiler

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Off the signal path: turns drained raw records into deduplicated stacks
/// and per-thread sample lists.
///
/// Record layout (cap_sample_header, 24 bytes, then `depth` × u64 frames, leaf first):
///   timestamp_ns u64 @0, weight u64 @8, tid i32 @16, depth u16 @20, flags u16 @22
///
/// Caller frames are stored as return address − 1, so they fall inside the
/// call instruction (the line of the call, not of the next statement).
/// Synthetic frames use addresses below 4096, where no code is ever mapped.
struct SampleCollector: Sendable {
  /// Addresses standing for synthetic frames.
  enum Synthetic: UInt64, CaseIterable {
    case truncated = 1
    case stackUnavailable = 2
    case droppedSamples = 3
    case unknownStack = 4

    var name: String {
      switch self {
      case .truncated: return "[truncated]"
      case .stackUnavailable: return "[stack unavailable]"
      case .droppedSamples: return "[dropped samples]"
      case .unknownStack: return "[unknown stack: signal not delivered]"
      }
    }
  }

  struct RawSample: Sendable {
    var timestamp: UInt64
    var count: UInt64
    /// Index into `stacks`, or -1 for a repeat of the thread's previous stack.
    var stack: Int32
    var flags: UInt16
  }

  private(set) var stacks: [[UInt64]] = []
  private var stackIDs: [[UInt64]: Int32] = [:]
  private(set) var samples: [Int32: [RawSample]] = [:]
  private(set) var threadNames: [Int32: String] = [:]
  private(set) var truncatedSamples: Int64 = 0
  private(set) var records: Int = 0

  mutating func stackID(_ frames: [UInt64]) -> Int32 {
    if let existing = stackIDs[frames] { return existing }
    let id = Int32(stacks.count)
    stacks.append(frames)
    stackIDs[frames] = id
    return id
  }

  /// Parses what `cap_session_drain` wrote.
  mutating func ingest(_ buffer: UnsafeRawBufferPointer) {
    let headerSize = MemoryLayout<cap_sample_header>.size
    var offset = 0
    var frames: [UInt64] = []
    frames.reserveCapacity(Int(CAP_MAX_DEPTH) + 1)
    while offset + headerSize <= buffer.count {
      let timestamp = buffer.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
      let weight = buffer.loadUnaligned(fromByteOffset: offset + 8, as: UInt64.self)
      let tid = buffer.loadUnaligned(fromByteOffset: offset + 16, as: Int32.self)
      let depth = Int(buffer.loadUnaligned(fromByteOffset: offset + 20, as: UInt16.self))
      let flags = buffer.loadUnaligned(fromByteOffset: offset + 22, as: UInt16.self)
      offset += headerSize
      guard offset + depth * 8 <= buffer.count else { break }
      records += 1
      if threadNames[tid] == nil { threadNames[tid] = Self.threadName(tid) }
      if flags & UInt16(CAP_SAMPLE_REPEAT) != 0 {
        samples[tid, default: []].append(RawSample(timestamp: timestamp, count: weight, stack: -1, flags: flags))
        offset += depth * 8
        continue
      }
      frames.removeAll(keepingCapacity: true)
      for index in 0..<depth {
        let address = buffer.loadUnaligned(fromByteOffset: offset + index * 8, as: UInt64.self)
        frames.append(index == 0 ? address : address &- 1)
      }
      offset += depth * 8
      if flags & UInt16(CAP_SAMPLE_TRUNCATED) != 0 {
        frames.append(Synthetic.truncated.rawValue)
        truncatedSamples += Int64(weight)
      } else if flags & UInt16(CAP_SAMPLE_NO_STACK_BOUNDS) != 0 {
        frames.append(Synthetic.stackUnavailable.rawValue)
      }
      let id = stackID(frames)
      samples[tid, default: []].append(RawSample(timestamp: timestamp, count: weight, stack: id, flags: flags))
    }
  }

  /// Per thread, in time order, with every repeat record replaced by the
  /// stack the thread had at that time (its previous sample; the next one
  /// when a run came before the thread's first handled signal).
  mutating func resolvedSamples() -> [Int32: [RawSample]] {
    var result: [Int32: [RawSample]] = [:]
    for (tid, list) in samples {
      var sorted = list.enumerated().sorted {
        $0.element.timestamp != $1.element.timestamp ? $0.element.timestamp < $1.element.timestamp : $0.offset < $1.offset
      }.map(\.element)
      var previous: Int32 = -1
      var waiting: [Int] = []
      for index in sorted.indices {
        if sorted[index].stack >= 0 {
          previous = sorted[index].stack
          for waitingIndex in waiting { sorted[waitingIndex].stack = previous }
          waiting.removeAll()
        } else if previous >= 0 {
          sorted[index].stack = previous
        } else {
          waiting.append(index)
        }
      }
      if !waiting.isEmpty {
        let unknown = stackID([Synthetic.unknownStack.rawValue])
        for waitingIndex in waiting { sorted[waitingIndex].stack = unknown }
      }
      result[tid] = sorted
    }
    return result
  }

  /// `/proc/self/task/<tid>/comm` without its newline; "thread-<tid>" once gone.
  static func threadName(_ tid: Int32) -> String {
    let fd = open("/proc/self/task/\(tid)/comm", O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return "thread-\(tid)" }
    defer { close(fd) }
    var buffer = [UInt8](repeating: 0, count: 64)
    let count = read(fd, &buffer, buffer.count)
    guard count > 0 else { return "thread-\(tid)" }
    var name = String(decoding: buffer[0..<count], as: UTF8.self)
    while name.hasSuffix("\n") { name.removeLast() }
    return name.isEmpty ? "thread-\(tid)" : name
  }
}
