#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A growable array of plain values in memory mapped for it alone, unmapped
/// when it goes. For the profiler's large, short-lived arrays (an image's
/// unwind rows: millions of entries for a few milliseconds): glibc keeps
/// what such arrays leave at the top of a thread's arena resident after
/// they are freed, and `malloc_trim` does not return it; unmapped memory
/// goes back to the system at once. Not for small arrays (a page at least).
final class MappedArray<Element: BitwiseCopyable>: @unchecked Sendable {
  private(set) var count = 0
  private var capacity = 0
  private var bytes = 0
  private var base: UnsafeMutableRawPointer? = nil

  init() {}

  deinit {
    if let base { munmap(base, bytes) }
  }

  var buffer: UnsafeMutableBufferPointer<Element> {
    UnsafeMutableBufferPointer(start: base?.assumingMemoryBound(to: Element.self), count: count)
  }

  subscript(index: Int) -> Element {
    get { buffer[index] }
    set { buffer[index] = newValue }
  }

  /// Appends `element`; false (nothing appended) when memory cannot be
  /// mapped.
  @discardableResult
  func append(_ element: Element) -> Bool {
    if count == capacity, !reserve(max(capacity * 2, 4096 / MemoryLayout<Element>.stride)) { return false }
    (base! + count * MemoryLayout<Element>.stride).storeBytes(of: element, as: Element.self)
    count += 1
    return true
  }

  /// Room for `wanted` elements without moving.
  func reserve(_ wanted: Int) -> Bool {
    guard wanted > capacity else { return true }
    let page = Int(sysconf(Int32(_SC_PAGESIZE)))
    let newBytes = (wanted * MemoryLayout<Element>.stride + page - 1) / page * page
    guard let mapped = mmap(nil, newBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0),
      mapped != MAP_FAILED
    else { return false }
    if let base {
      mapped.copyMemory(from: base, byteCount: count * MemoryLayout<Element>.stride)
      munmap(base, bytes)
    }
    base = mapped
    bytes = newBytes
    capacity = newBytes / MemoryLayout<Element>.stride
    return true
  }

  /// Gives back the pages past the last element.
  func shrinkToFit() {
    guard let base else { return }
    let page = Int(sysconf(Int32(_SC_PAGESIZE)))
    let needed = max((count * MemoryLayout<Element>.stride + page - 1) / page * page, page)
    guard needed < bytes else { return }
    munmap(base + needed, bytes - needed)
    bytes = needed
    capacity = needed / MemoryLayout<Element>.stride
  }
}
