import Foundation
import Testing

/// Total of the default sample type that `go tool pprof -top` reports, in
/// milliseconds ("Showing nodes accounting for …, 100% of 123.45ms total").
func pprofTotalMilliseconds(_ output: String) -> Double? {
  guard let regex = try? Regex(#"of ([0-9.]+)(ms|s|us|ns) total"#), let match = output.firstMatch(of: regex),
    let number = match[1].substring.flatMap({ Double($0) }), let unit = match[2].substring
  else { return nil }
  switch unit {
  case "s": return number * 1000
  case "us": return number / 1000
  case "ns": return number / 1_000_000
  default: return number
  }
}

/// The share `go tool pprof -top` gives `function` in the cum% column.
func pprofCumulativePercent(_ output: String, _ function: String) -> Double? {
  for line in output.split(separator: "\n") where line.contains(function) {
    let columns = line.split(separator: " ", omittingEmptySubsequences: true)
    // flat flat% sum% cum cum% name
    guard columns.count >= 6, columns[4].hasSuffix("%") else { continue }
    return Double(columns[4].dropLast())
  }
  return nil
}

extension ServerSuite {
  /// Lock contention over HTTP, read by `go tool pprof`: a testee whose
  /// two threads share a pthread mutex measures its own wait (LOCKWAIT).
  @Suite struct LockEndpointTests {
    @Test func blockAndMutexWindowsMatchTheMeasuredWait() throws {
      let scratch = TemporaryDirectory()
      defer { scratch.remove() }
      try withTestee(arguments: ["--tcp", "--lock-contention"]) { testee in
        // The first window starts once the unwind tables are built (up to
        // ~1 s here), after the request: warm them so that the measured
        // span and the window coincide.
        #expect(try Curl.request(url: testee.address + "/debug/pprof/block?seconds=0.2").status == 200)
        for (path, function) in [("block", "testeeLockWaiter"), ("mutex", "testeeLockHolder")] {
          let before = try testee.command("LOCKWAIT", answer: "LOCKWAIT")
          let answer = try Curl.request(url: testee.address + "/debug/pprof/\(path)?seconds=3")
          let after = try testee.command("LOCKWAIT", answer: "LOCKWAIT")
          #expect(answer.status == 200, "\(path): \(answer.text.prefix(300))")
          let measured =
            Double((Int(after.split(separator: " ").last ?? "") ?? 0) - (Int(before.split(separator: " ").last ?? "") ?? 0)) / 1e6
          let file = scratch.path + "/\(path).pb.gz"
          try answer.body.write(to: URL(fileURLWithPath: file))
          let top = try goPprof(["-sample_index=delay", "-top", "-unit=ms", file], scratch: scratch.path)
          #expect(top.status == 0, "\(top.error)")
          let total = pprofTotalMilliseconds(top.output) ?? 0
          let share = pprofCumulativePercent(top.output, function) ?? 0
          print("\(path): measured \(measured) ms, profile \(total) ms, \(function) \(share)%")
          #expect(measured > 300, "the waiter waited \(measured) ms in 3 s")
          // The window's edges cut a wait or two (~2 ms each) either way.
          #expect(total >= measured * 0.7 && total <= measured * 1.3, "\(path): \(total) ms vs measured \(measured) ms\n\(top.output)")
          #expect(share >= 80, "\(path): \(function) \(share)%\n\(top.output)")
          let contentions = try goPprof(["-sample_index=contentions", "-top", file], scratch: scratch.path)
          #expect(contentions.output.contains("Type: contentions"), "\(contentions.output)")
        }
        // /profile?mode=block in speedscope; the CLI's top by delay.
        let speedscope = try Curl.request(url: testee.address + "/profile?mode=block&duration=1&format=speedscope")
        #expect(speedscope.status == 200)
        #expect(speedscope.text.contains("\"unit\":\"nanoseconds\"") && speedscope.text.contains("testeeLockWaiter"))
        let top = try cli(["top", testee.address, "--mode", "mutex", "--duration", "1", "--sample-index", "delay"])
        #expect(top.status == 0, "\(top.error)")
        #expect(top.output.contains("testeeLockHolder"), "\(top.output)")
        #expect(try Curl.request(url: testee.address + "/profile?mode=block&duration=1&interval=0").status == 400)
        #expect(testee.isAlive)
      }
    }

    /// The viewer at / records a block profile in place (headless Chromium).
    @Test func viewerRecordsABlockProfile() throws {
      let scratch = TemporaryDirectory()
      defer { scratch.remove() }
      try withTestee(arguments: ["--tcp", "--lock-contention"]) { testee in
        let live = try chromiumDump(
          testee.address + "/#record?mode=block&duration=1", scratch: scratch.path, budgetMilliseconds: 15_000)
        #expect(consoleErrors(live.console).isEmpty, "\(consoleErrors(live.console))")
        #expect(live.dom.contains("testeeLockWaiter"), "the live page did not render the block profile")
        #expect(live.dom.contains(">delay (nanoseconds)<"), "the sample type is offered")
      }
    }

    /// APP_PROFILER_LOCKS=1: `/debug/pprof/block` and `/mutex` without
    /// `seconds` are the totals since start, what scrapers diff.
    @Test func alwaysOnLockSamplingServesCumulativeTotals() throws {
      let scratch = TemporaryDirectory()
      defer { scratch.remove() }
      try withTestee(arguments: ["--tcp", "--lock-contention"], environment: ["APP_PROFILER_LOCKS": "1"]) { testee in
        usleep(1_000_000)
        var totals: [Double] = []
        for _ in 0..<2 {
          let answer = try Curl.request(url: testee.address + "/debug/pprof/block")
          #expect(answer.status == 200)
          let file = scratch.path + "/block.pb.gz"
          try answer.body.write(to: URL(fileURLWithPath: file))
          let top = try goPprof(["-sample_index=delay", "-top", "-unit=ms", file], scratch: scratch.path)
          #expect(top.output.contains("testeeLockWaiter"), "\(top.output)")
          totals.append(pprofTotalMilliseconds(top.output) ?? 0)
          usleep(500_000)
        }
        #expect(totals[0] > 100 && totals[1] > totals[0], "cumulative totals grow: \(totals)")
        let mutex = try Curl.request(url: testee.address + "/debug/pprof/mutex")
        #expect(mutex.status == 200)
        let file = scratch.path + "/mutex.pb.gz"
        try mutex.body.write(to: URL(fileURLWithPath: file))
        let top = try goPprof(["-top", file], scratch: scratch.path)
        #expect(top.output.contains("testeeLockHolder"), "\(top.output)")
      }
    }
  }
}
