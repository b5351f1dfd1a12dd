import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// "The back door works when the service is stuck": a child whose Swift
/// concurrency pool and main thread are blocked still answers every profile
/// request, because nothing on a request's path needs them.
extension ServerSuite {
  @Suite struct StuckService {
    /// Seconds a request took, and its answer.
    static func timed(_ testee: Testee, _ target: String) throws -> (seconds: Double, answer: HTTPAnswer) {
      let start = Date()
      let answer = try Curl.get(testee, target)
      return (Date().timeIntervalSince(start), answer)
    }

    @Test func blockedCooperativePoolStillAnswers() throws {
      try withTestee(arguments: ["--block-pool"]) { testee in
        let blocked = try testee.readLine(timeout: 10)
        #expect(blocked.hasPrefix("POOL-BLOCKED "), "\(blocked)")

        let wall = try Self.timed(testee, "/profile?mode=wall&duration=1&format=collapsed")
        #expect(wall.answer.status == 200)
        #expect(wall.seconds < 5, "wall 1 s took \(wall.seconds) s")
        #expect(wall.answer.text.contains("testeePoolWait"), "\(wall.answer.text.prefix(1500))")

        let cpu = try Self.timed(testee, "/profile?mode=cpu&duration=1&format=collapsed")
        #expect(cpu.answer.status == 200)
        #expect(cpu.seconds < 5, "cpu 1 s took \(cpu.seconds) s")
        #expect(cpu.answer.text.contains("testeeHotInner"))

        let dump = try Self.timed(testee, "/debug/pprof/threads?debug=2")
        #expect(dump.answer.status == 200)
        #expect(dump.seconds < 5, "thread dump took \(dump.seconds) s")
        // Each pool thread: waiting on its semaphore, under its Swift caller,
        // with the kernel's word for it.
        let threads = dump.answer.text.components(separatedBy: "\n\n").filter { $0.contains("testeePoolWait") }
        #expect(threads.count >= ProcessInfo.processInfo.activeProcessorCount, "\(dump.answer.text.prefix(3000))")
        for thread in threads {
          #expect(thread.contains("blocked in futex"), "\(thread)")
          #expect(thread.contains("DispatchSemaphore.wait") || thread.contains("dispatch_semaphore_wait"), "\(thread)")
        }

        let grouped = try Curl.get(testee, "/debug/pprof/threads?debug=1")
        #expect(grouped.status == 200)
        let poolGroup = grouped.text.components(separatedBy: "\n\n").first { $0.contains("testeePoolWait") } ?? ""
        #expect(poolGroup.hasPrefix("\(threads.count) @ "), "\(grouped.text.prefix(2000))")
        #expect(testee.isAlive)
      }
    }

    /// Profiles are of the app: the profiler's own threads (the request's
    /// thread, the drain, the server's event loop) are left out unless asked.
    @Test func profilerThreadsAreLeftOutUnlessAsked() throws {
      try withTestee { testee in
        func threadNames(_ target: String) throws -> [String] {
          let answer = try Curl.get(testee, target)
          #expect(answer.status == 200)
          let json = try JSONSerialization.jsonObject(with: answer.body) as? [String: Any]
          return (json?["profiles"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }
        }
        let app = try threadNames("/profile?mode=wall&duration=0.5")
        #expect(app.contains { $0.hasPrefix("testee-hot") }, "\(app)")
        #expect(!app.contains { $0.hasPrefix("app-prof") || $0.hasPrefix("NIO-") }, "\(app)")
        let all = try threadNames("/profile?mode=wall&duration=0.5&include_profiler=1")
        #expect(all.contains { $0.hasPrefix("app-prof-req") }, "\(all)")
        #expect(all.contains { $0.hasPrefix("NIO-") }, "\(all)")
        let bad = try Curl.get(testee, "/profile?include_profiler=yes")
        #expect(bad.status == 400 && bad.text.contains("include_profiler"))
      }
    }

    /// A 1 s cpu profile of `testee` in pprof, written to `scratch`: its path.
    static func cpuPprofFile(_ testee: Testee, scratch: TemporaryDirectory, name: String) throws -> String {
      let pprof = try Curl.get(testee, "/profile?mode=cpu&duration=1&format=pprof")
      #expect(pprof.status == 200)
      let file = scratch.path + "/\(name).pb.gz"
      try pprof.body.write(to: URL(fileURLWithPath: file))
      return file
    }

    /// Async stacks over HTTP: on by default, `async=0` turns them off.
    @Test func asyncCallersAreInProfilesUnlessTurnedOff() throws {
      try withTestee(arguments: ["--async-worker"]) { testee in
        func burnStacks(_ target: String) throws -> [String] {
          let answer = try Curl.get(testee, target)
          #expect(answer.status == 200)
          return answer.text.split(separator: "\n").map(String.init).filter { $0.contains("testeeAsyncBurn") }
        }
        let stitched = try burnStacks("/profile?mode=cpu&duration=1&format=collapsed")
        let chained = stitched.filter {
          $0.range(of: #"\[async\];.*testeeAsyncOuter.*;.*testeeAsyncMiddle.*;.*testeeAsyncInner.*;.*testeeAsyncBurn"#,
            options: .regularExpression) != nil
        }
        #expect(stitched.count > 0)
        #expect(Double(chained.count) >= 0.9 * Double(stitched.count), "\(stitched.prefix(5))")
        let plain = try burnStacks("/profile?mode=cpu&duration=1&format=collapsed&async=0")
        #expect(plain.count > 0)
        #expect(!plain.contains { $0.contains("[async]") || $0.contains("testeeAsyncOuter") }, "\(plain.prefix(5))")
        let bad = try Curl.get(testee, "/profile?async=yes")
        #expect(bad.status == 400 && bad.text.contains("async"))

        // The same stacks in pprof, read by go tool pprof: [async] above the
        // outer function, and the running task as the numeric label `task`.
        let scratch = TemporaryDirectory()
        defer { scratch.remove() }
        let file = try Self.cpuPprofFile(testee, scratch: scratch, name: "async")
        let traces = try goPprof(["-traces", file], scratch: scratch.path)
        #expect(traces.status == 0, "\(traces.error)")
        let burnTraces = traces.output.components(separatedBy: "-----------+").filter { $0.contains("testeeAsyncBurn") }
        #expect(!burnTraces.isEmpty)
        #expect(burnTraces.contains { $0.contains("[async]") && $0.contains("testeeAsyncOuter") }, "\(burnTraces.prefix(2))")
        let tags = try goPprof(["-tags", file], scratch: scratch.path)
        #expect(tags.status == 0 && tags.output.contains("task:"), "\(tags.output.prefix(1500))")
        // Speedscope (shared.frames) and the HTML page carry the same frames.
        let speedscope = try Curl.get(testee, "/profile?mode=cpu&duration=0.5&format=speedscope")
        let json = try JSONSerialization.jsonObject(with: speedscope.body) as? [String: Any]
        let frameNames = ((json?["shared"] as? [String: Any])?["frames"] as? [[String: Any]] ?? []).compactMap {
          $0["name"] as? String
        }
        #expect(frameNames.contains("[async]") && frameNames.contains { $0.contains("testeeAsyncOuter") }, "\(frameNames.prefix(40))")
        let html = try Curl.get(testee, "/profile?mode=cpu&duration=0.5&format=html")
        #expect(html.status == 200 && html.text.contains("[async]") && html.text.contains("testeeAsyncOuter"))
        // app-profiler top (the CLI, on the same file) names the async callers.
        let top = try cli(["top", file, "--limit", "60"])
        #expect(top.status == 0 && top.output.contains("testeeAsyncOuter"), "\(top.output.prefix(2000))")
        // The thread dump: the worker's thread, stitched (one of a few dumps:
        // a dump is one tick, and the worker may be between slices: 5 tries
        // missed it once in a local run, so up to 20, 50 ms apart).
        var dumped = false
        for attempt in 0..<20 where !dumped {
          if attempt > 0 { usleep(50_000) }
          let dump = try Curl.get(testee, "/debug/pprof/threads?debug=2")
          dumped = dump.text.components(separatedBy: "\n\n").contains {
            $0.contains("testeeAsyncBurn") && $0.contains("[async]") && $0.contains("testeeAsyncOuter")
          }
        }
        #expect(dumped)
        #expect(testee.isAlive)
      }
    }

    /// Labels over HTTP: in pprof (`go tool pprof -tagfocus`), filtered at
    /// the source (`label=`), grouped (`group_by=`).
    @Test func labelsFilterAndGroupProfiles() throws {
      try withTestee(arguments: ["--async-worker"]) { testee in
        let scratch = TemporaryDirectory()
        defer { scratch.remove() }
        let file = try Self.cpuPprofFile(testee, scratch: scratch, name: "labels")
        let tags = try goPprof(["-tags", file], scratch: scratch.path)
        #expect(tags.output.contains("worker:") && tags.output.contains("async") && tags.output.contains("hot"), "\(tags.output.prefix(1500))")
        let asyncOnly = try goPprof(["-tagfocus", "worker=async", "-top", file], scratch: scratch.path)
        #expect(asyncOnly.status == 0, "\(asyncOnly.error)")
        #expect(asyncOnly.output.contains("testeeAsyncBurn") && !asyncOnly.output.contains("testeeHotInner"), "\(asyncOnly.output.prefix(2000))")
        let hotOnly = try goPprof(["-tagfocus", "worker=hot", "-top", file], scratch: scratch.path)
        #expect(hotOnly.output.contains("testeeHotInner") && !hotOnly.output.contains("testeeAsyncBurn"), "\(hotOnly.output.prefix(2000))")

        // app-profiler top --tag on the same file.
        let topAsync = try cli(["top", file, "--tag", "worker=async", "--limit", "60"])
        #expect(topAsync.status == 0 && topAsync.output.contains("testeeAsyncBurn") && !topAsync.output.contains("testeeHotInner"), "\(topAsync.output.prefix(2000))")
        // Short names: Type.f(x:) instead of the module-qualified signature.
        let short = try cli(["top", file, "--names", "short", "--limit", "60"])
        #expect(short.status == 0 && short.output.contains(" testeeHotInner()") && !short.output.contains("AppProfilerTestee.testeeHotInner"), "\(short.output.prefix(2000))")
        let full = try cli(["top", file, "--limit", "60"])
        #expect(full.output.contains("AppProfilerTestee.testeeHotInner()"), "\(full.output.prefix(2000))")
        #expect(try cli(["top", file, "--names", "tiny"]).status != 0)
        let badTag = try cli(["top", file, "--tag", "worker"])
        #expect(badTag.status != 0 && badTag.error.contains("--tag"), "\(badTag.error)")

        let filtered = try Curl.get(testee, "/profile?mode=cpu&duration=0.5&format=collapsed&label=worker=hot")
        #expect(filtered.status == 200)
        #expect(filtered.text.contains("testeeHotInner") && !filtered.text.contains("testeeAsyncBurn"), "\(filtered.text.prefix(1500))")

        let grouped = try Curl.get(testee, "/profile?mode=cpu&duration=0.5&format=speedscope&group_by=worker")
        let json = try JSONSerialization.jsonObject(with: grouped.body) as? [String: Any]
        let names = (json?["profiles"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }
        #expect(names.contains { $0.hasPrefix("worker=async") } && names.contains { $0.hasPrefix("worker=hot") }, "\(names)")
        let groupedCollapsed = try Curl.get(testee, "/profile?mode=cpu&duration=0.5&format=collapsed&group_by=worker")
        #expect(groupedCollapsed.text.split(separator: "\n").contains { $0.hasPrefix("[worker=hot];") && $0.contains("testeeHotInner") })

        // The HTML page's label selector: every key=value is a choice;
        // #label=worker=hot preselects one, and the graph keeps its samples.
        let page = try Curl.get(testee, "/profile?mode=cpu&duration=0.5&format=html")
        let pageFile = scratch.path + "/labels.html"
        try page.body.write(to: URL(fileURLWithPath: pageFile))
        let all = try chromiumDump("file://" + pageFile, scratch: scratch.path)
        #expect(consoleErrors(all.console).isEmpty, "\(consoleErrors(all.console))")
        #expect(all.dom.contains("<option value=\"worker=hot\">") && all.dom.contains("<option value=\"worker=async\">"), "no label choices")
        // Blocks drawn for a function (the embedded profile names them all).
        func drawn(_ dom: String, _ function: String) -> Bool {
          dom.components(separatedBy: "data-name=\"").dropFirst().contains { $0.prefix { $0 != "\"" }.contains(function) }
        }
        #expect(drawn(all.dom, "testeeHotInner") && drawn(all.dom, "testeeAsyncBurn"))
        let hotPage = try chromiumDump("file://" + pageFile + "#label=worker=hot", scratch: scratch.path)
        #expect(drawn(hotPage.dom, "testeeHotInner"), "the hot worker's function is gone")
        #expect(!drawn(hotPage.dom, "testeeAsyncBurn"), "the async worker's samples are still drawn")

        let bad = try Curl.get(testee, "/profile?label=route")
        #expect(bad.status == 400 && bad.text.contains("label"))
        #expect(testee.isAlive)
      }
    }

    /// A thread that blocks the signal cannot hold a session open: the
    /// profile ends on time and names the thread as not sampled.
    @Test func signalBlockedThreadDoesNotHoldTheSessionOpen() throws {
      try withTestee(arguments: ["--sigprof-blocker"]) { testee in
        // Warm the symbol caches first: the 3.5 s bound is about the
        // session ending, not about a cold first symbolication (~1–2 s on a
        // loaded 2-core machine).
        #expect(try Curl.get(testee, "/profile?mode=wall&duration=0.2").status == 200)
        let wall = try Self.timed(testee, "/profile?mode=wall&duration=2")
        #expect(wall.answer.status == 200)
        #expect(wall.seconds < 3.5, "a 2 s profile took \(wall.seconds) s")
        let json = try JSONSerialization.jsonObject(with: wall.answer.body) as? [String: Any]
        let ours = json?["x-app-profiler"] as? [String: Any]
        #expect((ours?["threadsNotSampled"] as? Int ?? 0) >= 1, "\(ours ?? [:])")
        #expect((ours?["threadsNotSampledNames"] as? String)?.contains("testee-sigblock") == true, "\(ours ?? [:])")
        _ = try testee.command("UNBLOCK", answer: "UNBLOCKED")
        #expect(testee.isAlive)
      }
    }

    /// 500 parked threads and a blocked pool: the dump lists them all. The
    /// 1 s goal is measured here and printed; the bound asserted holds on a
    /// loaded 2-core machine.
    @Test func dumpOfFiveHundredThreads() throws {
      try withTestee(arguments: ["--park-threads", "500", "--block-pool"]) { testee in
        _ = try testee.readLine(timeout: 10)
        let first = try Self.timed(testee, "/debug/pprof/threads?debug=2")
        let second = try Self.timed(testee, "/debug/pprof/threads?debug=2")
        let grouped = try Self.timed(testee, "/debug/pprof/threads?debug=1")
        print("thread dump of \(testee.count("task")) threads: first \(first.seconds) s, then \(second.seconds) s; grouped \(grouped.seconds) s")
        #expect(second.answer.status == 200)
        let listed = Int(second.answer.text.split(separator: " ").first ?? "") ?? 0
        #expect(listed >= 500, "\(second.answer.text.prefix(200))")
        #expect(second.seconds < 3, "\(second.seconds) s")
        #expect(grouped.answer.text.contains("@ "), "\(grouped.answer.text.prefix(500))")
      }
    }
  }
}
