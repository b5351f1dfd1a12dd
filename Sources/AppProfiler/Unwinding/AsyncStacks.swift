import CAppProfiler

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// What the handler needs from the Swift concurrency runtime to stitch a
/// task's async callers into its stacks and to record the running task
/// (docs/async-stacks.md). Found once, off the signal path, from the image
/// that defines `swift_task_getCurrent` (libswift_Concurrency.so, or the
/// executable when the runtime is linked statically):
///
/// * the executor: `swift::runJobInEstablishedExecutorContext`, the function
///   that calls a task's resume function (from `.symtab`); where the image
///   has no `.symtab`, the exported `swift_job_run` family, which inlines it
///   in some builds;
/// * the TLS slot of the current task, read from `swift_task_getCurrent`'s
///   code (`cap_task_tls_locate`).
///
/// A process without the concurrency runtime gets neither, and stacks are
/// what they were.
struct AsyncRuntime: Sendable {
  /// Sorted executor functions (runtime addresses).
  let executors: [Range<UInt64>]
  let taskTLSModule: UInt64
  let taskTLSOffset: UInt64

  static let executorSymbol = "_ZN5swift34runJobInEstablishedExecutorContextEPNS_3JobE"
  static let exportedExecutors = [
    "swift_job_run", "swift_job_run_on_task_executor", "swift_job_run_on_serial_and_task_executor",
  ]

  /// Found once per process; the runtime is never unloaded.
  static let current: AsyncRuntime = locate()

  /// The same ranges as C structs, alive for the life of the process (the
  /// handler reads them while any session runs).
  static let executorTable = ExecutorTable(current.executors)

  /// Never freed: a handler may read it as long as any session runs.
  final class ExecutorTable: @unchecked Sendable {
    let pointer: UnsafePointer<cap_code_range>?
    let count: Int
    init(_ ranges: [Range<UInt64>]) {
      let table = UnsafeMutablePointer<cap_code_range>.allocate(capacity: max(1, ranges.count))
      for (index, range) in ranges.enumerated() {
        table[index] = cap_code_range(start: range.lowerBound, end: range.upperBound)
      }
      pointer = UnsafePointer(table)
      count = ranges.count
    }
  }

  /// The C configuration for a session: stitching as asked, task ids always
  /// when the TLS slot is known.
  static func config(stitch: Bool) -> cap_async_config {
    var config = cap_async_config()
    let table = executorTable
    config.executors = table.pointer
    config.executor_count = UInt32(table.count)
    config.stitch = stitch && table.count > 0 ? 1 : 0
    config.task_tls_module = current.taskTLSModule
    config.task_tls_offset = current.taskTLSOffset
    return config
  }

  /// The running task (swift_task_getCurrent), or nil.
  static func currentTask() -> UInt64? {
    guard let function = getCurrentFunction else { return nil }
    let task = UInt64(UInt(bitPattern: function()))
    return task == 0 ? nil : task
  }

  private typealias GetCurrent = @convention(c) () -> UnsafeMutableRawPointer?
  // swift_task_getCurrent takes nothing and returns a pointer: the same in
  // the Swift and C conventions.
  private static let getCurrentFunction: GetCurrent? =
    dlsym(nil, "swift_task_getCurrent").map { unsafeBitCast($0, to: GetCurrent.self) }

  private static func locate() -> AsyncRuntime {
    // dlsym(RTLD_DEFAULT): every image loaded in the global scope.
    guard let getCurrent = dlsym(nil, "swift_task_getCurrent") else {
      return AsyncRuntime(executors: [], taskTLSModule: 0, taskTLSOffset: 0)
    }
    return locate(getCurrent: getCurrent)
  }

  private static func locate(getCurrent: UnsafeMutableRawPointer) -> AsyncRuntime {
    var module: UInt64 = 0
    var offset: UInt64 = 0
    if cap_task_tls_locate(getCurrent, &module, &offset) == 0 {
      module = 0
      offset = 0
    }
    let address = UInt64(UInt(bitPattern: getCurrent))
    let images = ImageMap.current()
    guard let (index, _) = images.lookup(address),
      let symbols = ELFSymbolTable(path: images.images[index].path),
      let getCurrentELF = symbols.range(ofFirst: { $0 == "swift_task_getCurrent" })
    else {
      return AsyncRuntime(executors: [], taskTLSModule: module, taskTLSOffset: offset)
    }
    let bias = address &- getCurrentELF.lowerBound
    var executors: [Range<UInt64>] = []
    if let runJob = symbols.range(ofFirst: { $0 == executorSymbol }) {
      executors.append((runJob.lowerBound &+ bias)..<(runJob.upperBound &+ bias))
    } else {
      for name in exportedExecutors {
        if let range = symbols.range(ofFirst: { $0 == name }) {
          executors.append((range.lowerBound &+ bias)..<(range.upperBound &+ bias))
        }
      }
    }
    executors.sort { $0.lowerBound < $1.lowerBound }
    return AsyncRuntime(executors: executors, taskTLSModule: module, taskTLSOffset: offset)
  }
}
