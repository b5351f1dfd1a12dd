import CAppProfiler

/// Returns what the profiler freed to the kernel. Building unwind tables,
/// reading DWARF and symbolizing allocate tens of MB for a moment; glibc's
/// malloc keeps freed memory for reuse, so without this a process stayed
/// 40–60 MB larger after its first profile. Called once a profile is built
/// (and by the server once it is sent); a few milliseconds at most.
@_spi(Support) public enum FreedMemory {
  public static func release() {
    cap_release_free_heap()
  }
}
