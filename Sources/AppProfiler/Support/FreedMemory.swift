import CAppProfiler
import Synchronization

/// Returns what the profiler freed to the kernel. Building unwind tables,
/// reading DWARF and symbol tables allocate tens of MB for a moment; glibc's
/// malloc keeps freed memory for reuse, so without this a process stayed
/// 40–60 MB larger after its first profile. `malloc_trim` locks each malloc
/// arena in turn while it walks it, so it runs only after such work (a
/// warm process's profiles and scrapes do not pay it): once a profile is
/// built, and by the server once it has answered.
@_spi(Support) public enum FreedMemory {
  private static let pending = Atomic<Bool>(false)

  /// Work that allocates much for a moment happened: tables were built, an
  /// image's symbols or DWARF read, a compilation unit parsed.
  static func noteTransientWork() {
    pending.store(true, ordering: .relaxed)
  }

  public static func release() {
    if pending.exchange(false, ordering: .relaxed) { cap_release_free_heap() }
  }
}
