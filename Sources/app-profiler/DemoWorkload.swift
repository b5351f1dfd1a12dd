import Foundation
import Synchronization

/// The demo's sample process: one thread hashing (CPU-bound), one waiting
/// on a condition (blocked), one alternating between both.
final class DemoWorkload: Sendable {
  private let stopping = Atomic<Bool>(false)
  private let condition = NSCondition()
  private let running = Atomic<Int>(0)

  func start() {
    let bodies: [(String, @Sendable () -> Void)] = [
      ("hasher", { [self] in while !self.stopping.load(ordering: .relaxed) { demoHandleLogin() } }),
      ("waiter", { [self] in demoWaitForWork(self) }),
      ("mixed", { [self] in
        while !self.stopping.load(ordering: .relaxed) {
          demoRenderReport(rows: 2_000)
          Thread.sleep(forTimeInterval: 0.005)
        }
      }),
    ]
    for (name, body) in bodies {
      let thread = Thread { [self] in
        nameThisThread(name)
        self.running.add(1, ordering: .relaxed)
        body()
        self.running.subtract(1, ordering: .relaxed)
      }
      thread.start()
    }
  }

  func stop() {
    stopping.store(true, ordering: .relaxed)
    condition.lock()
    condition.broadcast()
    condition.unlock()
    while running.load(ordering: .relaxed) > 0 { usleep(1_000) }
  }

  fileprivate func waitLoop() {
    condition.lock()
    while !stopping.load(ordering: .relaxed) { condition.wait() }
    condition.unlock()
  }
}

/// Results land here so the optimizer cannot drop the work.
let demoSink = Atomic<UInt64>(0)

@inline(never)
func demoHandleLogin() {
  demoHashPassword(rounds: 50_000)
}

@inline(never)
func demoHashPassword(rounds: Int) {
  var hash: UInt64 = 0xcbf2_9ce4_8422_2325 ^ demoSink.load(ordering: .relaxed)
  for round in 0..<rounds {
    hash ^= UInt64(truncatingIfNeeded: round)
    hash = hash &* 0x100_0000_01b3
  }
  demoSink.wrappingAdd(hash, ordering: .relaxed)
}

@inline(never)
func demoRenderReport(rows: Int) {
  var text = ""
  for row in 0..<rows { text += "row \(row)\n" }
  demoSink.wrappingAdd(UInt64(text.utf8.count), ordering: .relaxed)
}

@inline(never)
func demoWaitForWork(_ workload: DemoWorkload) {
  workload.waitLoop()
}

/// Names the calling thread (what /proc/<pid>/task/<tid>/comm shows).
/// Foundation's Thread.name does not reliably reach the kernel on Linux: its
/// setter compares against a handle the parent stores after the thread starts.
func nameThisThread(_ name: String) {
  let fd = open("/proc/thread-self/comm", O_WRONLY)
  guard fd >= 0 else { return }
  let bytes = Array(name.utf8.prefix(15))
  _ = bytes.withUnsafeBufferPointer { write(fd, $0.baseAddress, $0.count) }
  close(fd)
}
