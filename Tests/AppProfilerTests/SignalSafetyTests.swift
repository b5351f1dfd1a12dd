import Foundation
import Testing

/// Code that runs in the signal handler or inside an allocation wrapper may
/// only call async-signal-safe functions. `nm -u` lists every symbol each of
/// those objects needs from elsewhere; each must be on this list (POSIX.1-2017
/// §2.4.3 plus plain system-call wrappers) or defined by a checked object.
@Suite struct SignalSafetyTests {
  static let allowed: Set<String> = [
    "__errno_location",  // errno: thread-local, read and restored by the handler
    "clock_gettime",  // POSIX async-signal-safe
    "syscall",  // raw system call (gettid, rt_tgsigqueueinfo); no locks, no allocation
    "ioctl",  // PERF_EVENT_IOC_PERIOD and _REFRESH: a plain system call wrapper
    "timer_settime",  // POSIX async-signal-safe: the timer engine's next (randomized) expiry
    "open", "read", "close",  // POSIX async-signal-safe: the allocation wrappers read /proc/self/maps once per new thread
    "log",  // the allocation wrappers' exponential draw: a pure function, no locks, no allocation
    "memcpy", "memset", "memmove",  // may be emitted by the compiler for copies
    "__stack_chk_fail",  // stack protector, aborts only on corruption
    "sched_yield",  // a plain system call: the lock table's spin guard yields while another thread holds it
  ]

  /// Every object whose code runs in the signal handler or inside an
  /// allocation or lock wrapper: the handler, the ring and the thread table
  /// it calls, the allocation and lock recording and the stack walk they share. Calls between them are allowed (each is
  /// checked itself).
  static let objects = [
    "signal_handler.c.o", "sample_ring.c.o", "thread_table.c.o", "alloc_record.c.o", "heap_set.c.o",
    "caller_stack.c.o", "lock_record.c.o",
  ]

  @Test(
    .disabled(
      if: underThreadSanitizer || underAddressSanitizer,
      "an instrumented object calls the sanitizer's runtime (__tsan_*, __asan_*); the check is for the real build"))
  func handlerObjectReferencesOnlyAllowedSymbols() throws {
    // The object this test binary was linked from, whatever the scratch path.
    let buildDirectory = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
    let objects = Self.objects.map { buildDirectory.appendingPathComponent("CAppProfiler.build/" + $0).path }
    for object in objects { try #require(FileManager.default.fileExists(atPath: object), "\(object) not found") }
    // Functions the checked objects define themselves.
    var own = Set<String>()
    for object in objects {
      let (_, output) = try runProcess("/usr/bin/env", ["nm", "--defined-only", object])
      for line in output.split(separator: "\n") {
        let parts = line.split(separator: " ", omittingEmptySubsequences: true)
        if parts.count == 3, "TtDdBb".contains(parts[1]) { own.insert(String(parts[2])) }
      }
    }
    for object in objects {
      let (status, output) = try runProcess("/usr/bin/env", ["nm", "-u", object])
      #expect(status == 0)
      let symbols = output.split(separator: "\n").compactMap { line -> String? in
        let parts = line.split(separator: " ", omittingEmptySubsequences: true)
        return parts.last.map(String.init)
      }
      let forbidden = symbols.filter { !Self.allowed.contains($0) && !own.contains($0) }
      #expect(forbidden.isEmpty, "\(object) references \(forbidden)")
    }
  }
}
