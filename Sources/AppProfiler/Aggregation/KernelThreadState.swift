#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// What the kernel says a thread is doing, for threads whose stack the
/// signal handler cannot record (they block the sampling signal):
///
///   /proc/self/task/<tid>/syscall  "202 0x7f… 0x80 …" (number, then arguments),
///                                  "running", or "-1 <sp> <pc>" (blocked, not in a call)
///   /proc/self/task/<tid>/wchan    the kernel function it sleeps in, "0" when none
struct KernelThreadState: Sendable, Hashable {
  /// The system call it is blocked in, by name where known ("futex"), else
  /// its number; nil when not in one.
  var systemCall: String?
  /// The kernel function it waits in (`futex_wait_queue`), nil when none.
  var waitChannel: String?
  /// True when the kernel reports it running (on a CPU, or runnable).
  var isRunning: Bool

  /// `futex (futex_wait_queue)`, `futex`, `futex_wait_queue`, or nil.
  private var detail: String? {
    switch (systemCall, waitChannel) {
    case (let call?, let channel?): return "\(call) (\(channel))"
    case (let call?, nil): return call
    case (nil, let channel?): return channel
    case (nil, nil): return nil
    }
  }

  /// The frame shown in profiles: `[kernel: futex (futex_wait_queue)]`,
  /// `[running with the signal blocked]`, or `[kernel: state unknown]`.
  var frameName: String {
    if isRunning { return "[running with the signal blocked]" }
    return "[kernel: \(detail ?? "state unknown")]"
  }

  /// For thread dumps: `running`, `blocked in futex (futex_wait_queue)`,
  /// `sleeping (do_epoll_wait)`, or `unknown` once the thread is gone.
  var description: String {
    if isRunning { return "running" }
    guard let detail else { return "unknown" }
    return systemCall != nil ? "blocked in \(detail)" : "sleeping (\(detail))"
  }

  /// Reads the state of `tid` now; all nil once the thread is gone.
  static func read(_ tid: Int32) -> KernelThreadState {
    let syscall = readFirstLine("/proc/self/task/\(tid)/syscall")
    let wchan = readFirstLine("/proc/self/task/\(tid)/wchan")
    var state = KernelThreadState(systemCall: nil, waitChannel: nil, isRunning: syscall == "running")
    if let syscall, let number = Int(syscall.split(separator: " ").first ?? ""), number >= 0 {
      state.systemCall = systemCallNames[number] ?? "syscall \(number)"
    }
    if let wchan, !wchan.isEmpty, wchan != "0" { state.waitChannel = wchan }
    return state
  }

  private static func readFirstLine(_ path: String) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var buffer = [UInt8](repeating: 0, count: 256)
    let count = Glibc.read(fd, &buffer, buffer.count)
    guard count > 0 else { return nil }
    let text = String(decoding: buffer[0..<count], as: UTF8.self)
    return text.split(separator: "\n", omittingEmptySubsequences: false).first.map(String.init)
  }

  /// The blocking system calls a server thread is usually found in.
  #if arch(x86_64)
  static let systemCallNames: [Int: String] = [
    0: "read", 1: "write", 7: "poll", 17: "pread64", 23: "select", 34: "pause", 35: "nanosleep",
    43: "accept", 45: "recvfrom", 47: "recvmsg", 61: "wait4", 128: "rt_sigtimedwait", 130: "rt_sigsuspend",
    202: "futex", 230: "clock_nanosleep", 232: "epoll_wait", 247: "waitid", 270: "pselect6", 271: "ppoll",
    281: "epoll_pwait", 288: "accept4", 441: "epoll_pwait2",
  ]
  #elseif arch(arm64)
  static let systemCallNames: [Int: String] = [
    22: "epoll_pwait", 63: "read", 64: "write", 67: "pread64", 72: "pselect6", 73: "ppoll", 98: "futex",
    101: "nanosleep", 115: "clock_nanosleep", 133: "rt_sigsuspend", 137: "rt_sigtimedwait", 202: "accept",
    207: "recvfrom", 212: "recvmsg", 242: "accept4", 260: "wait4", 95: "waitid", 441: "epoll_pwait2",
  ]
  #else
  static let systemCallNames: [Int: String] = [:]
  #endif
}
