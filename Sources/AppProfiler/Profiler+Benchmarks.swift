import AppProfilerFormats
import CAppProfiler

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Hooks for `Benchmarks/` (`@_spi(Benchmarks)`): cold caches and the
/// handler's unwinder and signal path measured in place.
extension Profiler {
  /// Drops the symbol caches so the next profile symbolizes cold. For
  /// benchmarks; a process never needs it (caches are keyed by image identity).
  @_spi(Benchmarks) public func resetSymbolCaches() {
    Symbolizer.shared.reset()
  }

  /// Drops the unwind tables so the next session builds them anew. For benchmarks.
  @_spi(Benchmarks) public func resetUnwindTables() {
    UnwindTables.shared.reset()
  }

  /// Builds (or reuses) the unwind tables of every loaded image and reports
  /// images, rows, bytes and build time. For benchmarks.
  @_spi(Benchmarks) public func unwindTableStatistics() -> (images: Int, rows: Int, bytes: Int, built: Int, milliseconds: Double) {
    let set = UnwindTables.shared.tableSet(for: ImageMap.current())
    return (set.count, set.rowCount, set.totalBytes, set.built, Double(set.buildNanoseconds) / 1e6)
  }

  /// Walks the calling thread's stack `iterations` times with the handler's
  /// unwinder; returns nanoseconds per walk and the depth. For benchmarks.
  @_spi(Benchmarks) public func benchmarkUnwind(iterations: Int, callFrameInformation: Bool) -> (nanoseconds: Double, depth: Int) {
    var depth: UInt32 = 0
    if callFrameInformation {
      let set = UnwindTables.shared.tableSet(for: ImageMap.current())
      let total = withExtendedLifetime(set) {
        cap_benchmark_unwind(set.images.baseAddress, UInt64(set.count), UInt32(iterations), &depth)
      }
      return (Double(total) / Double(iterations), Int(depth))
    }
    let total = cap_benchmark_unwind(nil, 0, UInt32(iterations), &depth)
    return (Double(total) / Double(iterations), Int(depth))
  }

  /// Benchmarks: the whole cost of one sample of the calling thread, here
  /// (signal delivery and handler), in nanoseconds per sample, averaged over
  /// `iterations` self-sent signals of the running session; nil when none
  /// runs. Keep `iterations` below the session's buffer slots.
  @_spi(Benchmarks) public func benchmarkSelfSignal(iterations: Int) -> Double? {
    let total = cap_benchmark_self_signal(UInt32(iterations))
    return total == 0 ? nil : Double(total) / Double(iterations)
  }
}
