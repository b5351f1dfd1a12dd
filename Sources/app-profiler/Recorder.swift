import AppProfiler
import ArgumentParser
import Foundation
import Synchronization

/// Runs one request while showing progress; Ctrl-C cancels it.
enum Recorder {
  static let interrupted = Atomic<Bool>(false)

  static func fetch(_ endpoint: Endpoint, _ query: String, expectedSeconds: Double, label: String) throws(CLIError) -> HTTPAnswer {
    let connection = HTTPConnection(endpoint)
    let result = Mutex<Result<HTTPAnswer, CLIError>?>(nil)
    let worker = Thread {
      let outcome: Result<HTTPAnswer, CLIError>
      do throws(CLIError) { outcome = .success(try connection.get(query)) } catch { outcome = .failure(error) }
      result.withLock { $0 = outcome }
    }
    worker.start()
    interrupted.store(false, ordering: .relaxed)
    signal(SIGINT) { _ in Recorder.interrupted.store(true, ordering: .relaxed) }
    defer { signal(SIGINT, SIG_DFL) }
    let progress = Progress(label: label, seconds: expectedSeconds)
    while result.withLock({ $0 == nil }) {
      if interrupted.load(ordering: .relaxed) {
        connection.cancel()
        progress.finish()
        throw CLIError.interrupted
      }
      progress.update()
      usleep(100_000)
    }
    progress.finish()
    let outcome = result.withLock { $0! }
    if case .failure(let error) = outcome, let pid = endpoint.pid, kill(pid, 0) != 0, errno == ESRCH {
      // Not a network problem: the profiled process is gone.
      throw .target("the process ended (pid \(pid)) while recording; nothing was written (\(error.message))")
    }
    return try outcome.get()
  }
}
