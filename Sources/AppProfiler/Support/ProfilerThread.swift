import CAppProfiler
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A plain joinable pthread for the profiler's own work (drains, profile
/// requests): never the Swift concurrency cooperative pool, so the profiler
/// keeps working in a process whose pool is blocked. Its allocations are not
/// sampled (they are the profiler's, not the app's).
@_spi(Support) public final class ProfilerThread: @unchecked Sendable {
  private var thread = pthread_t()
  private let joined = Atomic<Bool>(false)
  private let started: Bool

  private final class Box {
    let name: String
    let body: () -> Void
    init(name: String, body: @escaping () -> Void) {
      self.name = name
      self.body = body
    }
  }

  /// Starts `body` on a new thread named `name` (at most 15 bytes show).
  public init(name: String, _ body: @escaping @Sendable () -> Void) {
    let box = Unmanaged.passRetained(Box(name: name, body: body)).toOpaque()
    let result = pthread_create(&thread, nil, { argument in
      let box = Unmanaged<Box>.fromOpaque(argument!).takeRetainedValue()
      ProfilerThreads.adoptCurrent(name: box.name)
      box.body()
      ProfilerThreads.unregisterCurrent()
      return nil
    }, box)
    started = result == 0
    if !started {
      // No thread: run nothing, but free the box.
      Unmanaged<Box>.fromOpaque(box).release()
    }
  }

  /// True when the thread could be created.
  public var isRunning: Bool { started }

  /// Waits for the thread to end. Safe to call more than once.
  public func join() {
    guard started, !joined.exchange(true, ordering: .acquiringAndReleasing) else { return }
    pthread_join(thread, nil)
  }

  deinit {
    if started && !joined.load(ordering: .acquiring) { pthread_detach(thread) }
  }

  /// Calls `tick` every `nanoseconds` on a thread of its own named `name`
  /// until it returns false (the drains of the wrapper samplers).
  static func repeating(name: String, every nanoseconds: UInt64, _ tick: @escaping @Sendable () -> Bool) {
    // Not joined: deinit detaches it.
    _ = ProfilerThread(name: name) {
      while true {
        sleep(nanoseconds: nanoseconds)
        if !tick() { break }
      }
    }
  }

  /// Runs `body` on a thread of its own and waits for it without holding a
  /// thread of the cooperative pool (stopping an exporter joins threads).
  public static func runOffThePool(_ body: @escaping @Sendable () -> Void) async {
    await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
      _ = ProfilerThread(name: "app-prof-stop") {
        body()
        done.resume()
      }
    }
  }

  /// Sleeps `nanoseconds` whole: the profile's own signals reach profiler
  /// threads too (a wall ticker signals every thread that used CPU), and a
  /// plain `usleep` returns at each one — a drain meant for every 10 ms
  /// then runs at the sampling rate.
  static func sleep(nanoseconds: UInt64) {
    var request = timespec(tv_sec: Int(nanoseconds / 1_000_000_000), tv_nsec: Int(nanoseconds % 1_000_000_000))
    var remaining = timespec()
    while nanosleep(&request, &remaining) == -1 && errno == EINTR { request = remaining }
  }
}
