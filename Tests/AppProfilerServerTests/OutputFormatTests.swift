import AppProfilerFormats
import Foundation
import Testing

extension ServerSuite {
  /// Issue 5: every output opens in its real consumer.
  @Suite struct OutputFormats {
    @Test(arguments: ["profile", "wall"])
    func goToolPprofReadsFilesFromTheSocket(endpoint: String) throws {
      let scratch = TemporaryDirectory()
      defer { scratch.remove() }
      try withTestee { testee in
        let answer = try Curl.get(testee, "/debug/pprof/\(endpoint)?seconds=1")
        #expect(answer.status == 200)
        #expect(answer.headers["content-type"] == "application/octet-stream")
        #expect(answer.headers["content-disposition"]?.hasPrefix("attachment; filename=") == true)
        #expect(answer.headers["x-content-type-options"] == "nosniff")
        let bytes = [UInt8](answer.body)
        #expect(Gzip.isCompressed(bytes))
        // What Alloy and Parca check, done by our strict decoder.
        let decoded = try PprofDecoder().decode(bytes)
        #expect(decoded.mode == (endpoint == "wall" ? .wall : .cpu))
        #expect(decoded.totalCount > 0)
        let file = scratch.path + "/profile.pb.gz"
        try answer.body.write(to: URL(fileURLWithPath: file))

        let raw = try goPprof(["-raw", file], scratch: scratch.path)
        #expect(raw.status == 0, "\(raw.error)")
        #expect(raw.output.contains("testeeHotInner"))
        let top = try goPprof(["-top", file], scratch: scratch.path)
        #expect(top.status == 0, "\(top.error)")
        if endpoint == "profile" {
          // The first function row of -top is the hottest by flat time.
          let rows = top.output.split(separator: "\n").drop { !$0.contains("flat%") }.dropFirst()
          #expect(rows.first?.contains("testeeHotInner") == true, "\(top.output)")
          let lines = try goPprof(["-lines", "-top", file], scratch: scratch.path)
          #expect(lines.output.contains("AppProfilerTestee/main.swift"), "\(lines.output)")
        }
      }
    }

    @Test(.disabled(if: underSlowSanitizer, "time bounds sized for the uninstrumented server; TSan and ASan slow it 2–20×"))
    func goToolPprofReadsTheURLAndShowsOurErrors() throws {
      let scratch = TemporaryDirectory()
      defer { scratch.remove() }
      try withTestee(arguments: ["--tcp"]) { testee in
        for endpoint in ["profile", "wall"] {
          let top = try goPprof(["-top", testee.address + "/debug/pprof/\(endpoint)?seconds=1"], scratch: scratch.path)
          #expect(top.status == 0, "\(top.error)")
          #expect(top.output.contains("testeeHotInner"))
          #expect(top.output.contains(endpoint == "wall" ? "Type: wall" : "Type: cpu"))
        }
        let bad = try goPprof(["-top", testee.address + "/debug/pprof/profile?seconds=abc"], scratch: scratch.path)
        #expect(bad.status != 0)
        #expect((bad.output + bad.error).contains("invalid parameter seconds='abc'"), "\(bad.error)")
        let answer = try Curl.get(testee, "/debug/pprof/profile?seconds=abc")
        #expect(answer.status == 400)
        #expect(answer.headers["x-go-pprof"] == "1")
        #expect(answer.headers["content-type"] == "text/plain; charset=utf-8")
      }
    }

    @Test func collapsedLinesParseAndSum() throws {
      try withTestee { testee in
        let answer = try Curl.get(testee, "/profile?format=collapsed&duration=0.5")
        #expect(answer.status == 200)
        var total: Int64 = 0
        let lines = answer.text.split(separator: "\n")
        #expect(!lines.isEmpty)
        for line in lines {
          let parts = line.split(separator: " ")
          let count = try #require(Int64(parts.last ?? ""), "bad line: \(line)")
          #expect(count > 0)
          total += count
        }
        #expect(answer.text.contains("testeeHotInner"))
        let decoded = try CollapsedDecoder().decode([UInt8](answer.body))
        #expect(decoded.totalCount == total)
      }
    }

    @Test func pprofIndexThreadsAndSymbol() throws {
      try withTestee { testee in
        let index = try Curl.get(testee, "/debug/pprof/")
        #expect(index.status == 200)
        #expect(index.headers["content-type"] == "text/html; charset=utf-8")
        for path in ["profile?seconds=30", "wall?seconds=30", "threads?debug=2"] { #expect(index.text.contains(path)) }
        let grouped = try Curl.get(testee, "/debug/pprof/threads?debug=1")
        #expect(grouped.text.hasPrefix("threads profile: total "))
        let full = try Curl.get(testee, "/debug/pprof/threads?debug=2")
        #expect(full.text.contains("testee-hot"))
        let binary = try Curl.get(testee, "/debug/pprof/threads")
        #expect(try PprofDecoder().decode([UInt8](binary.body)).threads.count >= 3)
        let symbolCheck = try Curl.get(testee, "/debug/pprof/symbol")
        #expect(symbolCheck.text == "num_symbols: 1\n")
        let bad = try Curl.get(testee, "/debug/pprof/threads?debug=7")
        #expect(bad.status == 400 && bad.headers["x-go-pprof"] == "1")
      }
    }

    @Test func htmlFlameGraphRendersInChromium() throws {
      let scratch = TemporaryDirectory()
      defer { scratch.remove() }
      try withTestee(arguments: ["--tcp"]) { testee in
        // A saved page, opened from file://.
        let page = try Curl.get(testee, "/profile?format=html&duration=1")
        #expect(page.status == 200)
        #expect(page.headers["content-type"] == "text/html; charset=utf-8")
        let file = scratch.path + "/flamegraph.html"
        try page.body.write(to: URL(fileURLWithPath: file))
        let saved = try chromiumDump("file://" + file, scratch: scratch.path)
        #expect(consoleErrors(saved.console).isEmpty, "\(consoleErrors(saved.console))")
        #expect(saved.dom.contains("class=\"frame\""))
        #expect(saved.dom.contains("data-name=\"AppProfilerTestee.testeeHotInner()"), "no block for the hot function")
        // Blocks show short names (no module, no result type); hover has the full one.
        #expect(saved.dom.contains(">testeeHotInner()</div>"), "block label not shortened")
        let shot = artifactDirectory() + "/flamegraph.png"
        _ = try run(
          "chromium",
          ["--headless=new", "--no-sandbox", "--disable-gpu", "--user-data-dir=\(scratch.path)/chromium",
           "--window-size=1280,800", "--screenshot=\(shot)", "file://" + file], environment: ["HOME": scratch.path])
        let size = (try? FileManager.default.attributesOfItem(atPath: shot)[.size] as? Int) ?? 0
        #expect(size > 10_000, "screenshot \(shot) missing or empty")

        // The served page at /, recording in place.
        let live = try chromiumDump(testee.address + "/#record?mode=cpu&duration=1", scratch: scratch.path, budgetMilliseconds: 15_000)
        #expect(consoleErrors(live.console).isEmpty, "\(consoleErrors(live.console))")
        #expect(live.dom.contains("id=\"record\""))
        #expect(live.dom.contains("data-name=\"AppProfilerTestee.testeeHotInner()"), "the live page did not render a profile")
      }
    }
  }
}
