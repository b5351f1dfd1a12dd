import Foundation
import Testing

/// The signal handler's object may only call async-signal-safe functions.
/// `nm -u` lists every symbol it needs from elsewhere; each must be on this
/// list (POSIX.1-2017 §2.4.3 plus plain system-call wrappers).
@Suite struct SignalSafetyTests {
  static let allowed: Set<String> = [
    "__errno_location",  // errno: thread-local, read and restored by the handler
    "clock_gettime",  // POSIX async-signal-safe
    "syscall",  // raw system call (gettid); no locks, no allocation
    "ioctl",  // PERF_EVENT_IOC_REFRESH: a plain system call wrapper
    "memcpy", "memset", "memmove",  // may be emitted by the compiler for copies
    "__stack_chk_fail",  // stack protector, aborts only on corruption
  ]

  @Test(
    .disabled(
      if: underThreadSanitizer || underAddressSanitizer,
      "an instrumented object calls the sanitizer's runtime (__tsan_*, __asan_*); the check is for the real build"))
  func handlerObjectReferencesOnlyAllowedSymbols() throws {
    // The object this test binary was linked from, whatever the scratch path.
    let buildDirectory = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
    let object = buildDirectory.appendingPathComponent("CAppProfiler.build/signal_handler.c.o").path
    try #require(FileManager.default.fileExists(atPath: object), "\(object) not found")
    let objects = [object]
    for object in objects {
      let (status, output) = try runProcess("/usr/bin/env", ["nm", "-u", object])
      #expect(status == 0)
      let symbols = output.split(separator: "\n").compactMap { line -> String? in
        let parts = line.split(separator: " ", omittingEmptySubsequences: true)
        return parts.last.map(String.init)
      }
      #expect(!symbols.isEmpty, "nm printed nothing for \(object)")
      let forbidden = symbols.filter { !Self.allowed.contains($0) }
      #expect(forbidden.isEmpty, "\(object) references \(forbidden)")
    }
  }
}
