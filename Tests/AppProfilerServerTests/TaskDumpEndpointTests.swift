import AppProfilerFormats
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `/debug/pprof/tasks` of a stuck service: tasks parked in known places
/// (continuations, Task.sleep, a group, an async let, an actor) while every
/// pool thread is blocked. Every parked task is listed with its chain.
extension ServerSuite {
  @Suite struct TaskDumpEndpoint {
    static let parked = 50

    @Test func parkedTasksOfAStuckServiceAreListed() throws {
      try withTestee(arguments: ["--park-tasks", String(Self.parked), "--block-pool"]) { testee in
        let parkedLine = try testee.readLine(timeout: 20)
        #expect(parkedLine.hasPrefix("PARKED "), "\(parkedLine)")
        let blocked = try testee.readLine(timeout: 10)
        #expect(blocked.hasPrefix("POOL-BLOCKED "), "\(blocked)")
        let width = ProcessInfo.processInfo.activeProcessorCount

        // debug=2: one entry per task, within 5 s while the pool is blocked.
        let start = Date()
        let text = try Curl.get(testee, "/debug/pprof/tasks?debug=2")
        let seconds = Date().timeIntervalSince(start)
        #expect(text.status == 200, "\(text.text.prefix(500))")
        #expect(seconds < 5, "task dump took \(seconds) s")
        let all = text.text.components(separatedBy: "\n\n").filter { $0.hasPrefix("task ") }
        func entries(with function: String) -> [String] { all.filter { $0.contains(function) } }
        // Every parked request: its chain down to its entry, in order.
        let requests = entries(with: "testeeParkedRequest")
        #expect(requests.count == Self.parked, "\(text.text.prefix(3000))")
        for entry in requests {
          #expect(entry.contains("suspended, waiting on continuation"), "\(entry)")
          let wait = entry.range(of: "testeeParkedWait()")
          let request = entry.range(of: "testeeParkedRequest(")
          #expect(wait != nil && request != nil && wait!.lowerBound < request!.lowerBound, "\(entry)")
          #expect(entry.contains("main.swift:"), "file:line of the await: \(entry)")
        }
        #expect(entries(with: "testeeSleeper").count == 4)
        #expect(entries(with: "testeeSleeper").allSatisfy { $0.contains("waiting on sleep") }, "\(entries(with: "testeeSleeper"))")
        #expect(entries(with: "testeeGroupChild").count == 3)
        #expect(entries(with: "testeeGroupChild").allSatisfy { $0.contains("child of ") })
        #expect(entries(with: "testeeGroupParent").contains { $0.contains("waiting on group") })
        #expect(entries(with: "testeeAsyncLetChild").count == 1)
        #expect(entries(with: "testeeAsyncLetParent(").contains { $0.contains("waiting on task") })
        #expect(entries(with: "TesteeGate.hold").count == 1)
        // The pool blockers: `width` running, the rest enqueued.
        #expect(all.filter { $0.contains(": running") }.count >= width, "\(text.text.prefix(2000))")
        #expect(all.filter { $0.contains(": enqueued") }.count >= width, "\(text.text.prefix(4000))")

        // debug=1: the parked requests are one group.
        let grouped = try Curl.get(testee, "/debug/pprof/tasks?debug=1")
        #expect(grouped.status == 200)
        let group = grouped.text.components(separatedBy: "\n\n").first { $0.contains("testeeParkedRequest") } ?? ""
        #expect(group.hasPrefix("\(Self.parked) tasks: suspended, waiting on continuation"), "\(grouped.text.prefix(2000))")

        // pprof, read by go tool pprof: tasks/count, labels to focus on.
        let scratch = TemporaryDirectory()
        defer { scratch.remove() }
        let pprof = try Curl.get(testee, "/debug/pprof/tasks")
        #expect(pprof.status == 200)
        let file = scratch.path + "/tasks.pb.gz"
        try pprof.body.write(to: URL(fileURLWithPath: file))
        let top = try goPprof(["-top", "-nodefraction=0", "-tagfocus", "waiting_on=continuation", file], scratch: scratch.path)
        #expect(top.status == 0, "\(top.error)")
        #expect(top.output.contains("Type: tasks"), "\(top.output.prefix(800))")
        #expect(top.output.contains("testeeParkedRequest"), "\(top.output.prefix(2000))")
        let decoded = try PprofDecoder().decode([UInt8](pprof.body))
        let samples = decoded.threads.flatMap(\.samples)
        #expect(samples.filter { $0.labels["waiting_on"] == "continuation" }.count >= Self.parked + 5)
        #expect(samples.allSatisfy { $0.labels["task_id"] != nil && $0.numericLabels["suspended_seconds"] != nil })

        // suspended_for: after 2 s, the parked ones have waited that long.
        Thread.sleep(forTimeInterval: 2.2)
        let long = try Curl.get(testee, "/debug/pprof/tasks?debug=2&suspended_for=2s")
        #expect(long.status == 200)
        let longEntries = long.text.components(separatedBy: "\n\n").filter { $0.hasPrefix("task ") }
        #expect(longEntries.filter { $0.contains("testeeParkedRequest") }.count == Self.parked, "\(long.text.prefix(2000))")
        // Running tasks have no await; enqueued ones wait for a thread (a starved pool) and stay.
        #expect(!longEntries.contains { $0.contains(": running") })
        print(grouped.text.prefix(2500))
        let none = try Curl.get(testee, "/debug/pprof/tasks?debug=1&suspended_for=1h")
        #expect(none.status == 200 && !none.text.contains("testeeParkedRequest"))

        for bad in ["/debug/pprof/tasks?debug=3", "/debug/pprof/tasks?suspended_for=soon", "/debug/pprof/tasks?seconds=1"] {
          let answer = try Curl.get(testee, bad)
          #expect(answer.status == 400, "\(bad): \(answer.status) \(answer.text)")
        }
        #expect(testee.isAlive)
      }
    }

    /// `/profile?mode=wall&tasks=1`: every task on no thread, weighted by
    /// time, under its marker; without `tasks=1` none; other modes refuse it.
    @Test func wallProfileOfEveryTask() throws {
      try withTestee(arguments: ["--park-tasks", "20"]) { testee in
        #expect(try testee.readLine(timeout: 20).hasPrefix("PARKED "))
        let with = try Curl.get(testee, "/profile?mode=wall&duration=1&tasks=1&format=collapsed")
        #expect(with.status == 200, "\(with.text.prefix(300))")
        var parked: Int64 = 0
        for line in with.text.split(separator: "\n") where line.contains("testeeParkedRequest") {
          #expect(line.contains("[suspended: continuation]"), "\(line)")
          parked += Int64(line.split(separator: " ").last ?? "0") ?? 0
        }
        // 20 of the testee's tasks waiting 1 s at 100 Hz: ~2,000 weighted samples.
        print("parked requests in a 1 s wall profile with tasks=1: \(parked) samples")
        #expect(parked >= 1000 && parked <= 3000, "\(with.text.prefix(2000))")
        // The HTML viewer: time off threads shown, hidden (#tasks=hide) or alone (#tasks=only).
        let scratch = TemporaryDirectory()
        defer { scratch.remove() }
        let page = try Curl.get(testee, "/profile?mode=wall&duration=1&tasks=1&format=html")
        let pageFile = scratch.path + "/tasks.html"
        try page.body.write(to: URL(fileURLWithPath: pageFile))
        func drawn(_ dom: String, _ function: String) -> Bool {
          dom.components(separatedBy: "data-name=\"").dropFirst().contains { $0.prefix { $0 != "\"" }.contains(function) }
        }
        let shown = try chromiumDump("file://" + pageFile, scratch: scratch.path)
        #expect(consoleErrors(shown.console).isEmpty, "\(consoleErrors(shown.console))")
        #expect(shown.dom.contains("id=\"offThreadLabel\"") && !shown.dom.contains("id=\"offThreadLabel\" hidden"))
        #expect(drawn(shown.dom, "testeeParkedRequest") && drawn(shown.dom, "testeeHotInner"))
        let hidden = try chromiumDump("file://" + pageFile + "#tasks=hide", scratch: scratch.path)
        #expect(!drawn(hidden.dom, "testeeParkedRequest") && drawn(hidden.dom, "testeeHotInner"))
        let only = try chromiumDump("file://" + pageFile + "#tasks=only", scratch: scratch.path)
        #expect(drawn(only.dom, "testeeParkedRequest") && !drawn(only.dom, "testeeHotInner"))

        let without = try Curl.get(testee, "/profile?mode=wall&duration=0.5&format=collapsed")
        #expect(without.status == 200 && !without.text.contains("[suspended"))
        let bad = try Curl.get(testee, "/profile?mode=cpu&duration=1&tasks=1")
        #expect(bad.status == 400 && bad.text.contains("tasks"), "\(bad.text)")
      }
    }

    /// With a slow-request threshold the flight recorder's wall ring counts
    /// tasks too (19 Hz); an on-demand `tasks=1` profile next to it still
    /// gets its own full count (each sampler its own clock), and neither
    /// counts `Task.sleep`'s timer tasks (their sleepers are counted).
    @Test func flightRecorderCountsTasksBesideAnOnDemandProfile() throws {
      let environment = ["APP_PROFILER_FLIGHT_RECORDER": "10", "APP_PROFILER_SLOW_REQUEST_MS": "500"]
      try withTestee(arguments: ["--park-tasks", "20"], environment: environment) { testee in
        #expect(try testee.readLine(timeout: 20).hasPrefix("PARKED "))
        func parked(_ profile: Profile) -> (parked: Int64, sleepTimers: Int64) {
          var result: (parked: Int64, sleepTimers: Int64) = (0, 0)
          for sample in profile.threads.flatMap(\.samples) {
            let names = profile.stacks[sample.stack].flatMap { profile.locations[$0].lines.map { profile.functions[$0.function].name } }
            let count = sample.values.first ?? 0
            if names.contains(where: { $0.contains("testeeParkedRequest") }) { result.parked += count }
            if names.first == "[enqueued]" && names.contains(where: { $0.contains("_sleep") }) { result.sleepTimers += count }
          }
          return result
        }
        let onDemand = try Curl.get(testee, "/profile?mode=wall&duration=1&tasks=1&format=pprof")
        #expect(onDemand.status == 200)
        let own = parked(try PprofDecoder().decode([UInt8](onDemand.body)))
        // 20 parked tasks × 1 s at 100 Hz.
        print("tasks=1 beside the flight recorder: \(own.parked) parked samples, \(own.sleepTimers) of sleep timers")
        #expect(own.parked >= 1000 && own.parked <= 3000 && own.sleepTimers == 0)
        Thread.sleep(forTimeInterval: 1.2)
        let flight = try Curl.get(testee, "/debug/pprof/flight?mode=wall&seconds=2")
        #expect(flight.status == 200, "\(flight.text.prefix(300))")
        let recorded = parked(try PprofDecoder().decode([UInt8](flight.body)))
        // 20 × 2 s at 19 Hz: ~760.
        print("flight recorder wall, 2 s: \(recorded.parked) parked samples, \(recorded.sleepTimers) of sleep timers")
        #expect(recorded.parked >= 380 && recorded.parked <= 1140 && recorded.sleepTimers == 0)
      }
    }

    /// Off by environment: the endpoint says so (501) and why.
    @Test func turnedOffTheEndpointSaysSo() throws {
      try withTestee(environment: ["APP_PROFILER_TASKS": "0"]) { testee in
        let answer = try Curl.get(testee, "/debug/pprof/tasks?debug=1")
        #expect(answer.status == 501, "\(answer.text)")
        #expect(answer.text.contains("APP_PROFILER_TASKS=0"), "\(answer.text)")
      }
    }
  }
}
