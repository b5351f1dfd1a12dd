import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Removes the server's socket and discovery record when the process exits
/// normally (`exit`, return from `main`) without stopping the server.
///
/// Only the process that created the files removes them: after `fork()`, the
/// child inherits this registry and the atexit handler, and must leave the
/// parent's files alone.
enum ExitCleanup {
  private struct Entry {
    var owner: pid_t
    var paths: [String]
  }

  private static let entries = Mutex<[Entry]>([])
  private static let installed = Atomic<Bool>(false)

  static func register(paths: [String]) {
    entries.withLock { $0.append(Entry(owner: getpid(), paths: paths)) }
    if installed.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged {
      atexit { ExitCleanup.runAtExit() }
    }
  }

  static func unregister(paths: [String]) {
    entries.withLock { list in list.removeAll { $0.paths == paths } }
  }

  private static func runAtExit() {
    let me = getpid()
    entries.withLock { list in
      for entry in list where entry.owner == me {
        for path in entry.paths { unlink(path) }
      }
      list.removeAll()
    }
  }
}
