import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// "The profiler never takes the app down": child processes in hostile but
/// ordinary conditions, profiled over the real socket, must stay alive.
extension ServerSuite {
  @Suite struct NeverTakesTheAppDown {
    /// A thread that blocks SIGPROF keeps a signal of ours pending past the
    /// session. Under the old "restore SIG_DFL" rule, unblocking it killed
    /// the process ("Profiling timer expired").
    @Test func threadBlockingTheSignalSurvivesAndIsListed() throws {
      try withTestee(arguments: ["--sigprof-blocker"]) { testee in
        let wall = try Curl.get(testee, "/profile?mode=wall&duration=0.5")
        #expect(wall.status == 200)
        let blocked = try Self.framesOfThread("testee-sigblock", speedscope: wall.body)
        #expect(blocked?.contains("[signal blocked]") == true, "wall frames of testee-sigblock: \(blocked ?? [])")
        #expect(blocked?.contains { $0.hasPrefix("[kernel: ") } == true, "kernel state frame: \(blocked ?? [])")

        let cpu = try Curl.get(testee, "/profile?mode=cpu&duration=0.5")
        #expect(cpu.status == 200)

        let dump = try Curl.get(testee, "/debug/pprof/threads?debug=2")
        #expect(dump.status == 200)
        #expect(dump.text.contains("testee-sigblock"), "\(dump.text.prefix(2000))")
        #expect(dump.text.contains("[signal blocked]"), "\(dump.text.prefix(2000))")
        // Every thread listed, the blocked one included (the sampler's own
        // ticker is not; the dump's request and drain threads are, and are
        // gone by the time /proc is read).
        let listed = Int(dump.text.split(separator: " ").first ?? "") ?? 0
        #expect(listed >= testee.count("task") - 1, "\(dump.text.prefix(80)); /proc has \(testee.count("task")) tasks")

        #expect(try testee.command("UNBLOCK", answer: "UNBLOCKED") == "UNBLOCKED")
        usleep(5_000_000)
        #expect(testee.isAlive)
        #expect(try testee.command("PING", answer: "PONG") == "PONG")
      }
    }

    /// 2 × cores SCHED_FIFO spinners (all on CPU 0, so the server and the
    /// test runner keep the other CPUs) starve a thread pinned there, whose
    /// signals then stay pending when the session ends. Before the fix, the
    /// restored SIG_DFL killed the process when the starved thread ran.
    @Test(.enabled(if: realTimeSchedulingAllowed(), "SCHED_FIFO is not permitted here"))
    func starvedThreadsSurviveWallProfiles() throws {
      let spinners = 2 * ProcessInfo.processInfo.activeProcessorCount
      try withTestee(arguments: ["--fifo-spinners", "\(spinners)"]) { testee in
        let status = try testee.readLine(timeout: 10)
        #expect(status == "FIFO ok")
        for _ in 0..<5 {
          let answer = try Curl.get(testee, "/profile?mode=wall&duration=0.3&format=collapsed")
          #expect(answer.status == 200)
          #expect(testee.isAlive)
        }
        usleep(2_000_000)
        #expect(testee.isAlive)
        #expect(try testee.command("PING", answer: "PONG") == "PONG")
      }
    }

    /// A plugin loaded, called and unloaded in a loop while profiles of
    /// every kind run: no crash, no hang, and its frames are named.
    @Test func pluginUnloadedWhileProfiling() throws {
      let scratch = TemporaryDirectory()
      defer { scratch.remove() }
      let plugin = try buildPlugin(in: scratch.path)
      try withTestee(arguments: ["--plugin", plugin, "--alloc-worker"]) { testee in
        let kinds = [
          "/profile?mode=cpu&duration=0.3&format=collapsed",
          "/profile?mode=wall&duration=0.3&format=collapsed",
          "/profile?mode=alloc&duration=0.3&format=collapsed",
          "/debug/pprof/threads?debug=2",
          "/profile?mode=block&duration=0.3&format=collapsed",
        ]
        var named = [0, 0, 0, 0, 0]
        for index in 0..<100 {
          let answer = try Curl.get(testee, kinds[index % kinds.count])
          #expect(answer.status == 200, "\(kinds[index % kinds.count]): \(answer.status) \(answer.text.prefix(300))")
          if answer.text.contains("plugin_work") { named[index % kinds.count] += 1 }
          guard testee.isAlive else {
            Issue.record("the testee died after \(index + 1) profiles")
            return
          }
        }
        let loops = try testee.command("PLUGIN", answer: "PLUGIN")
        print("plugin: \(loops); profiles naming plugin_work (cpu, wall, alloc, dump of 25 each): \(named)")
        #expect((Int(loops.split(separator: " ").last ?? "") ?? 0) > 100)
        #expect(named[0] > 0, "no cpu profile named plugin_work")
        #expect(named[1] > 0, "no wall profile named plugin_work")
        #expect(testee.isAlive)
      }
    }

    /// The app's own SIGPROF handlers — installed before, during and after a
    /// session — are called afterwards, and a kill(getpid(), SIGPROF) during a
    /// session reaches the app's handler, not the sampler.
    @Test func appSignalHandlersKeepBeingCalled() throws {
      try withTestee(arguments: ["--app-handler"]) { testee in
        func counts() throws -> [Int] {
          try testee.command("RAISE", answer: "COUNTS").split(separator: " ").dropFirst().map { Int($0) ?? -1 }
        }
        #expect(try counts() == [1, 0, 0])

        // During a session: the sampler passes the app's signal on.
        let during = Thread.detachedCurl(testee, "/profile?mode=wall&duration=1.5")
        usleep(500_000)
        #expect(try counts() == [2, 0, 0])
        // Handler 2 installed during the session...
        _ = try testee.command("HANDLER 2", answer: "HANDLER")
        #expect(during.wait()?.status == 200)
        // ...is the one called afterwards (it may have received the session's
        // last ticks itself: only compare with what it had).
        var before = try counts()
        #expect(before[0] == 2)
        #expect(before[1] >= 1)

        // A session after it: the sampler installs itself again and chains.
        #expect(try Curl.get(testee, "/profile?mode=cpu&duration=0.3").status == 200)
        var after = try counts()
        #expect(after[0] == 2)
        #expect(after[1] == before[1] + 1)

        // Handler 3 installed after the session is the one called.
        _ = try testee.command("HANDLER 3", answer: "HANDLER")
        before = after
        after = try counts()
        #expect(after == [before[0], before[1], 1])
        #expect(testee.isAlive)
      }
    }

    /// A 64 KiB-stack thread recursing until only the documented headroom
    /// (docs/signal-safety.md) is left survives 1 kHz cpu and wall profiles.
    @Test func smallStackWithDocumentedHeadroomSurvives() throws {
      try withTestee(arguments: ["--small-stack", "\(documentedSignalHeadroom)"]) { testee in
        usleep(200_000)
        let cpu = try Curl.get(testee, "/profile?mode=cpu&duration=1&interval=1000&engine=perf")
        let fallback = cpu.status == 200 ? cpu : try Curl.get(testee, "/profile?mode=cpu&duration=1&interval=1000")
        #expect(fallback.status == 200)
        #expect(try Self.framesOfThread("testee-deep", speedscope: fallback.body)?.contains { $0.contains("testeeDeepSpin") } == true)
        let wall = try Curl.get(testee, "/profile?mode=wall&duration=1&interval=1000")
        #expect(wall.status == 200)
        #expect(testee.isAlive)
        #expect(try testee.command("PING", answer: "PONG") == "PONG")
      }
    }

    // MARK: Start-up faults

    /// Each fault: the app keeps running with the server off, and says why
    /// and how to fix it in exactly one log line.
    @Test func startUpFaultsNeverEndTheApp() throws {
      let parent = TemporaryDirectory()
      defer { parent.remove() }
      let open = parent.path + "/open"
      mkdir(open, 0o755)
      chmod(open, 0o755)
      let target = parent.path + "/target"
      mkdir(target, 0o700)
      let link = parent.path + "/link"
      symlink(target, link)
      let long = parent.path + "/" + String(repeating: "d", count: 100)
      mkdir(long, 0o700)
      let cases: [(name: String, directory: String, environment: [String: String], problem: String, fix: String)] = [
        ("0755 directory", open, [:], "accessible to other users", "chmod 700"),
        ("symlinked directory", link, [:], "symbolic link", "real directory"),
        ("symlink with a trailing slash", link + "/", [:], "symbolic link", "real directory"),
        ("socket path over 107 bytes", long, [:], "socket path too long", "shorter"),
        ("bad APP_PROFILER_PORT", parent.path, ["APP_PROFILER_TRANSPORT": "tcp", "APP_PROFILER_PORT": "http"], "APP_PROFILER_PORT", "correct or unset"),
      ]
      for fault in cases {
        let testee = try Testee(directory: fault.directory, environment: fault.environment, captureStandardError: true)
        #expect(testee.address == "disabled", "\(fault.name): \(testee.address)")
        #expect(try testee.command("PING", answer: "PONG") == "PONG", "\(fault.name)")
        #expect(testee.isAlive, "\(fault.name)")
        let log = testee.finishCapturingStandardError()
        let lines = log.split(separator: "\n").filter { $0.contains("app-profiler server not started") }
        #expect(lines.count == 1, "\(fault.name): \(log)")
        #expect(lines.first?.contains(fault.problem) == true, "\(fault.name): \(log)")
        #expect(lines.first?.contains(fault.fix) == true, "\(fault.name): \(log)")
        #expect(testee.process.terminationStatus == 0, "\(fault.name)")
      }
      #expect((try? FileManager.default.contentsOfDirectory(atPath: target))?.isEmpty == true)
    }

    // MARK: Helpers

    /// The frame names of one thread's speedscope profile, nil when absent.
    static func framesOfThread(_ thread: String, speedscope: Data) throws -> Set<String>? {
      let json = try JSONSerialization.jsonObject(with: speedscope) as? [String: Any]
      let frames = ((json?["shared"] as? [String: Any])?["frames"] as? [[String: Any]])?.map { $0["name"] as? String ?? "" } ?? []
      for profile in json?["profiles"] as? [[String: Any]] ?? [] {
        guard let name = profile["name"] as? String, name.contains(thread) else { continue }
        var names = Set<String>()
        for sample in profile["samples"] as? [[Int]] ?? [] {
          for index in sample where index < frames.count { names.insert(frames[index]) }
        }
        return names
      }
      return nil
    }
  }
}

/// The stack a thread must keep free for a sample (docs/signal-safety.md).
let documentedSignalHeadroom = 8 * 1024

/// SCHED_FIFO needs CAP_SYS_NICE (root here, but not in every container).
func realTimeSchedulingAllowed() -> Bool {
  var thread = pthread_t()
  let box = UnsafeMutablePointer<Int32>.allocate(capacity: 1)
  defer { box.deallocate() }
  box.pointee = -1
  let created = pthread_create(&thread, nil, { argument in
    let result = argument!.assumingMemoryBound(to: Int32.self)
    var parameters = sched_param(sched_priority: 1)
    result.pointee = pthread_setschedparam(pthread_self(), SCHED_FIFO, &parameters)
    return nil
  }, box)
  guard created == 0 else { return false }
  pthread_join(thread, nil)
  return box.pointee == 0
}

/// Compiles a C plugin (`plugin_work(ms)`: spins on the clock and
/// allocates) into `directory`; returns the .so path. 3,000 more functions
/// give it an `.eh_frame` large enough that reading it takes a while: the
/// window in which an unload used to crash the unwind-table builder.
func buildPlugin(in directory: String) throws -> String {
  let source = directory + "/plugin.c"
  let library = directory + "/libtesteeplugin.so"
  let filler = (0..<3000).map {
    "__attribute__((noinline)) unsigned long plugin_filler\($0)(unsigned long x) { return x * \($0 * 2 + 1)ul + plugin_filler_sink(x); }"
  }.joined(separator: "\n")
  try """
    #include <stdlib.h>
    #include <time.h>
    __attribute__((noinline)) unsigned long plugin_filler_sink(unsigned long x) { return x ^ 0x5bd1e995ul; }
    \(filler)
    __attribute__((noinline)) unsigned long plugin_spin(int ms) {
      struct timespec start, now;
      clock_gettime(CLOCK_MONOTONIC, &start);
      unsigned long x = 1;
      do {
        for (int i = 0; i < 1000; i++) x = x * 6364136223846793005ul + 1;
        clock_gettime(CLOCK_MONOTONIC, &now);
      } while ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000 < ms);
      return x;
    }
    __attribute__((noinline)) unsigned long plugin_work(int ms) {
      unsigned long x = plugin_spin(ms);
      for (int i = 0; i < 64; i++) {
        char *p = malloc(4096 + (size_t)i);
        if (p) { p[0] = (char)x; x += (unsigned char)p[0]; free(p); }
      }
      return x;
    }
    """.write(toFile: source, atomically: true, encoding: .utf8)
  var lastError = ""
  for compiler in ["cc", "clang", "gcc"] {
    guard let result = try? run(compiler, ["-shared", "-fPIC", "-O1", "-o", library, source]) else { continue }
    if result.status == 0 { return library }
    lastError = result.error
  }
  throw Testee.StartError(message: "cannot compile the plugin: \(lastError)")
}

extension Thread {
  /// A curl request on a thread of its own (never on the cooperative pool).
  final class PendingAnswer: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    var answer: HTTPAnswer?
    func finish(_ answer: HTTPAnswer?) {
      self.answer = answer
      done.signal()
    }
    func wait() -> HTTPAnswer? {
      done.wait()
      return answer
    }
  }

  static func detachedCurl(_ testee: Testee, _ target: String) -> PendingAnswer {
    let pending = PendingAnswer()
    Thread { pending.finish(try? Curl.get(testee, target)) }.start()
    return pending
  }
}
