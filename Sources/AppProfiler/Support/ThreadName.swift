#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Names the calling thread as `/proc/<pid>/task/<tid>/comm` shows it (at
/// most 15 bytes). Glibc's Swift module does not export
/// pthread_setname_np, and Foundation's Thread.name does not reliably reach
/// the kernel on Linux. SPI for the project's own demo and test fixture.
@_spi(Support) public func nameCurrentThread(_ name: String) {
  let fd = open("/proc/thread-self/comm", O_WRONLY)
  guard fd >= 0 else { return }
  let bytes = Array(name.utf8.prefix(15))
  _ = bytes.withUnsafeBufferPointer { write(fd, $0.baseAddress, $0.count) }
  close(fd)
}

/// The name of thread `tid` of this process: `/proc/self/task/<tid>/comm`
/// without its newline; "thread-<tid>" once it is gone.
func readThreadName(_ tid: Int32) -> String {
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
