import AppProfilerFormats
import Foundation
import Testing

extension ServerSuite {
  /// Issue 7 over the socket: alloc profiles, the `object` alias, go tool
  /// pprof, and the cumulative `/debug/pprof/allocs`.
  @Suite struct AllocationEndpoints {
    /// Estimated bytes of samples whose stack holds `fragment`.
    static func bytes(_ profile: Profile, containing fragment: String) -> Int64 {
      var total: Int64 = 0
      for thread in profile.threads {
        for sample in thread.samples {
          let names = profile.functionsOfStack(sample.stack).map { profile.functions[$0].name }
          if names.contains(where: { $0.contains(fragment) }) { total += profile.value(sample, "alloc_space") }
        }
      }
      return total
    }

    @Test func allocAndObjectModesAndGoToolPprof() throws {
      let scratch = TemporaryDirectory()
      defer { scratch.remove() }
      try withTestee(arguments: ["--alloc-worker"]) { testee in
        var decoded: [String: Profile] = [:]
        for mode in ["alloc", "object"] {
          let answer = try Curl.get(testee, "/profile?mode=\(mode)&duration=1&interval=65536&format=pprof")
          #expect(answer.status == 200, "\(answer.text)")
          let profile = try PprofDecoder().decode([UInt8](answer.body))
          #expect(profile.mode == .alloc)
          #expect(UInt64(profile.period) == 65_536)
          decoded[mode] = profile
          let file = scratch.path + "/\(mode).pb.gz"
          try answer.body.write(to: URL(fileURLWithPath: file))
          let top = try goPprof(["-sample_index=alloc_space", "-top", file], scratch: scratch.path)
          #expect(top.status == 0, "\(top.error)")
          #expect(top.output.contains("Type: alloc_space"), "\(top.output)")
          #expect(top.output.contains("testeeAllocate"), "\(top.output)")
          let objects = try goPprof(["-sample_index=alloc_objects", "-top", file], scratch: scratch.path)
          #expect(objects.status == 0 && objects.output.contains("Type: alloc_objects"))
        }
        // Same mode, same workload: both find the worker and its type, with
        // byte totals of the same order (the worker allocates steadily).
        let alloc = Self.bytes(decoded["alloc"]!, containing: "testeeAllocate")
        let object = Self.bytes(decoded["object"]!, containing: "testeeAllocate")
        #expect(alloc > 1_000_000 && object > 1_000_000, "alloc \(alloc) object \(object)")
        #expect(Double(max(alloc, object)) / Double(max(1, min(alloc, object))) < 3)
        for profile in decoded.values {
          #expect(profile.functions.contains { $0.isAllocatedType && $0.name.hasSuffix("TesteeObject") })
        }

        // Speedscope: weights in bytes.
        let speedscope = try Curl.get(testee, "/profile?mode=alloc&duration=0.5&interval=65536")
        #expect(speedscope.status == 200)
        #expect(speedscope.text.contains("\"unit\":\"bytes\""))
        #expect(speedscope.text.contains("TesteeObject"))
        // Bad rate: 400 naming bytes.
        let bad = try Curl.get(testee, "/profile?mode=alloc&interval=0")
        #expect(bad.status == 400)
        #expect(bad.text.contains("interval") && bad.text.contains("bytes"))
      }
    }

    @Test func allocsAnswers400WhenContinuousModeIsOff() throws {
      try withTestee { testee in
        let answer = try Curl.get(testee, "/debug/pprof/allocs")
        #expect(answer.status == 400)
        #expect(answer.headers["x-go-pprof"] == "1")
        #expect(answer.text.contains("APP_PROFILER_ALLOC_ALWAYS_ON=1"))
        #expect(answer.text.contains("/debug/pprof/allocs?seconds=N"))
      }
    }

    @Test func continuousScrapesAreCumulative() throws {
      let scratch = TemporaryDirectory()
      defer { scratch.remove() }
      try withTestee(
        arguments: ["--alloc-worker"],
        environment: ["APP_PROFILER_ALLOC_ALWAYS_ON": "1", "APP_PROFILER_ALLOC_RATE": "65536"]
      ) { testee in
        let first = try Curl.get(testee, "/debug/pprof/allocs")
        #expect(first.status == 200, "\(first.text)")
        usleep(1_000_000)
        let second = try Curl.get(testee, "/debug/pprof/allocs")
        #expect(second.status == 200)
        let a = try PprofDecoder().decode([UInt8](first.body))
        let b = try PprofDecoder().decode([UInt8](second.body))
        #expect(a.mode == .alloc && b.mode == .alloc)
        // Every stack of the first scrape is in the second with at least as much.
        func totals(_ profile: Profile) -> [String: (objects: Int64, bytes: Int64)] {
          var result: [String: (Int64, Int64)] = [:]
          for thread in profile.threads {
            for sample in thread.samples {
              let key = profile.functionsOfStack(sample.stack).map { profile.functions[$0].name }.joined(separator: ";")
              result[key, default: (0, 0)].0 += profile.count(sample)
              result[key, default: (0, 0)].1 += profile.value(sample, "alloc_space")
            }
          }
          return result
        }
        let before = totals(a)
        let after = totals(b)
        #expect(!before.isEmpty)
        var shrunk: [String] = []
        for (stack, value) in before {
          guard let later = after[stack], later.objects >= value.objects, later.bytes >= value.bytes else {
            shrunk.append(stack)
            continue
          }
        }
        #expect(shrunk.isEmpty, "stacks that shrank or vanished: \(shrunk.prefix(3))")
        let workerBefore = Self.bytes(a, containing: "testeeAllocate")
        let workerAfter = Self.bytes(b, containing: "testeeAllocate")
        #expect(workerAfter > workerBefore, "\(workerBefore) → \(workerAfter)")

        // A window while continuous mode runs, and go tool pprof on a scrape.
        let window = try Curl.get(testee, "/debug/pprof/allocs?seconds=0.5")
        #expect(window.status == 200)
        let file = scratch.path + "/allocs.pb.gz"
        try second.body.write(to: URL(fileURLWithPath: file))
        let top = try goPprof(["-sample_index=alloc_space", "-top", file], scratch: scratch.path)
        #expect(top.status == 0, "\(top.error)")
        #expect(top.output.contains("testeeAllocate"))
      }
    }
  }
}

extension ServerSuite {
  /// Issue 7's outputs with their consumers: the CLI, the speedscope schema,
  /// the HTML viewer in Chromium.
  @Suite struct AllocationOutputs {
    @Test func cliRecordTopAndTheViewer() throws {
      let scratch = TemporaryDirectory()
      defer { scratch.remove() }
      try withTestee(arguments: ["--alloc-worker"]) { testee in
        let env = ["APP_PROFILER_DIR": testee.directory]
        let pid = String(testee.pid)
        let json = scratch.path + "/alloc.speedscope.json"
        let record = try cli(["record", pid, "--mode", "alloc", "--interval", "65536", "--duration", "1", "-o", json], environment: env)
        #expect(record.status == 0, "\(record.error)")
        let check = try run("python3", [repositoryRoot + "/Tests/Support/validate_speedscope.py", json])
        #expect(check.status == 0, "\(check.output)\(check.error)")

        let pprof = scratch.path + "/alloc.pb.gz"
        #expect(try cli(["record", pid, "--mode", "object", "--duration", "1", "-o", pprof], environment: env).status == 0)
        let top = try cli(["top", pprof, "--limit", "40"])
        #expect(top.status == 0, "\(top.error)")
        #expect(top.output.contains("self bytes") && top.output.contains("allocated Swift type"), "\(top.output)")
        #expect(top.output.contains("TesteeObject") && top.output.contains("testeeAllocate"), "\(top.output)")
        let live = try cli(["top", pid, "--mode", "alloc", "--duration", "0.5"], environment: env)
        #expect(live.status == 0 && live.output.contains("alloc profile"), "\(live.output)\(live.error)")

        // The HTML page: the bytes/objects switch is shown, the type has a block.
        let page = try Curl.get(testee, "/profile?mode=alloc&duration=1&interval=65536&format=html")
        #expect(page.status == 200)
        let file = scratch.path + "/alloc.html"
        try page.body.write(to: URL(fileURLWithPath: file))
        let saved = try chromiumDump("file://" + file, scratch: scratch.path)
        #expect(consoleErrors(saved.console).isEmpty, "\(consoleErrors(saved.console))")
        #expect(saved.dom.contains("id=\"weightLabel\">"), "the bytes/objects switch is hidden")
        #expect(saved.dom.contains("data-name=\"AppProfilerTestee.TesteeObject\""), "no block for the allocated type")
      }
    }
  }
}

extension ServerSuite {
  /// Issue 19 over the socket: `/debug/pprof/heap` read by go tool pprof,
  /// windows that measure a leak's rate, `mode=heap`, `top --inuse` and
  /// `diff` naming the leak.
  @Suite struct HeapEndpoints {
    /// In-use and allocated bytes of samples whose stack holds `fragment`.
    static func heap(_ profile: Profile, containing fragment: String) -> (inuse: Int64, alloc: Int64) {
      var totals: (Int64, Int64) = (0, 0)
      for thread in profile.threads {
        for sample in thread.samples {
          let names = profile.functionsOfStack(sample.stack).map { profile.functions[$0].name }
          guard names.contains(where: { $0.contains(fragment) }) else { continue }
          totals.0 += profile.value(sample, "inuse_space")
          totals.1 += profile.value(sample, "alloc_space")
        }
      }
      return totals
    }

    @Test func heapAnswers400WhenAllocationSamplingIsOff() throws {
      try withTestee { testee in
        let answer = try Curl.get(testee, "/debug/pprof/heap?gc=1")
        #expect(answer.status == 400)
        #expect(answer.text.contains("APP_PROFILER_HEAP=1"))
        #expect(answer.text.contains("/debug/pprof/heap?seconds=N"))
        let unknown = try Curl.get(testee, "/debug/pprof/heap?debug=1")
        #expect(unknown.status == 400 && unknown.text.contains("allowed seconds, gc"), "\(unknown.text)")
      }
    }

    /// A leak of 1 MB/s: two 2-second windows each report it within ±15 %.
    @Test func heapWindowsMeasureTheLeakRate() throws {
      let scratch = TemporaryDirectory()
      defer { scratch.remove() }
      let rate = 1_000_000.0
      try withTestee(
        arguments: ["--alloc-worker", "--leak-worker", String(Int(rate))],
        environment: ["APP_PROFILER_ALLOC_RATE": "4096"]
      ) { testee in
        for round in 0..<2 {
          let answer = try Curl.get(testee, "/debug/pprof/heap?seconds=2&gc=1")
          #expect(answer.status == 200, "\(answer.text)")
          let profile = try PprofDecoder().decode([UInt8](answer.body))
          #expect(profile.mode == .heap)
          let leak = Self.heap(profile, containing: "testeeLeak")
          let seconds = Double(profile.durationNanoseconds) / 1e9
          let measured = Double(leak.inuse) / seconds
          print("heap window \(round): \(leak.inuse) bytes in use after \(seconds) s = \(Int(measured)) B/s (leak \(Int(rate)) B/s)")
          #expect(abs(measured - rate) <= 0.15 * rate, "measured \(measured) B/s")
          // The alloc worker's objects die young: allocated, hardly in use.
          let churn = Self.heap(profile, containing: "testeeAllocate")
          #expect(churn.alloc > 10 * max(1, churn.inuse), "\(churn)")
          if round == 0 {
            let file = scratch.path + "/heap-window.pb.gz"
            try answer.body.write(to: URL(fileURLWithPath: file))
            let top = try goPprof(["-sample_index=inuse_space", "-top", file], scratch: scratch.path)
            #expect(top.status == 0, "\(top.error)")
            #expect(top.output.contains("Type: inuse_space") && top.output.contains("testeeLeak"), "\(top.output)")
          }
        }
        // mode=heap on /profile, any format.
        let speedscope = try Curl.get(testee, "/profile?mode=heap&duration=0.5&interval=4096")
        #expect(speedscope.status == 200, "\(speedscope.text)")
        #expect(speedscope.text.contains("inuse_space") && speedscope.text.contains("TesteeLeak"))
      }
    }

    /// Always on: `/debug/pprof/heap` since start, go tool pprof, the CLI's
    /// `top --inuse`, and `diff` of two profiles 5 s apart naming the leak first.
    @Test func alwaysOnHeapTopAndDiff() throws {
      let scratch = TemporaryDirectory()
      defer { scratch.remove() }
      try withTestee(
        arguments: ["--alloc-worker", "--leak-worker", "500000"],
        environment: ["APP_PROFILER_HEAP": "1", "APP_PROFILER_ALLOC_RATE": "65536"]
      ) { testee in
        let base = scratch.path + "/base.pb.gz"
        let first = try Curl.get(testee, "/debug/pprof/heap?gc=1")
        #expect(first.status == 200, "\(first.text)")
        try first.body.write(to: URL(fileURLWithPath: base))
        usleep(5_000_000)
        let second = try Curl.get(testee, "/debug/pprof/heap")
        #expect(second.status == 200)
        let new = scratch.path + "/new.pb.gz"
        try second.body.write(to: URL(fileURLWithPath: new))

        for index in ["inuse_space", "alloc_objects", "inuse_objects", "alloc_space"] {
          let top = try goPprof(["-sample_index=\(index)", "-top", new], scratch: scratch.path)
          #expect(top.status == 0, "\(top.error)")
          #expect(top.output.contains("Type: \(index)"), "\(top.output)")
        }
        let inuse = try cli(["top", new, "--inuse", "--limit", "10"])
        #expect(inuse.status == 0, "\(inuse.error)")
        #expect(inuse.output.contains("heap profile (inuse_space)") && inuse.output.contains("testeeLeak"), "\(inuse.output)")
        #expect(inuse.output.contains("TesteeLeak"), "\(inuse.output)")
        let wrong = try cli(["top", scratch.path + "/base.pb.gz", "--sample-index", "nope"])
        #expect(wrong.status != 0 && wrong.error.contains("no sample type 'nope'"), "\(wrong.error)")

        let diffFile = scratch.path + "/diff.pb.gz"
        let diff = try cli(["diff", base, new, "--limit", "5", "-o", diffFile])
        #expect(diff.status == 0, "\(diff.error)")
        // The first row under the header is the leaking allocation site:
        // TesteeLeak's allocating initializer (called by testeeLeak).
        let rows = diff.output.split(separator: "\n").map(String.init)
        let firstRow = rows.first { $0.contains("+") && !$0.contains("self Δ") && !$0.contains("difference") } ?? ""
        #expect(firstRow.contains("TesteeLeak") || firstRow.contains("testeeLeak"), "\(diff.output)")
        #expect(diff.output.contains("TesteeLeak"), "\(diff.output)")
        let read = try goPprof(["-sample_index=inuse_space", "-top", diffFile], scratch: scratch.path)
        #expect(read.status == 0 && read.output.contains("testeeLeak"), "\(read.output)\(read.error)")
        // The growth as a flame graph: the HTML page in Chromium shows the
        // leak's block, speedscope's format validates.
        let page = scratch.path + "/growth.html"
        let html = try cli(["diff", base, new, "-o", page])
        #expect(html.status == 0, "\(html.error)")
        let saved = try chromiumDump("file://" + page, scratch: scratch.path)
        #expect(consoleErrors(saved.console).isEmpty, "\(consoleErrors(saved.console))")
        #expect(saved.dom.contains("testeeLeak"), "no block for the leak")
        let json = scratch.path + "/growth.speedscope.json"
        #expect(try cli(["diff", base, new, "-o", json]).status == 0)
        let check = try run("python3", [repositoryRoot + "/Tests/Support/validate_speedscope.py", json])
        #expect(check.status == 0, "\(check.output)\(check.error)")
        let badName = try cli(["diff", base, new, "-o", scratch.path + "/growth.bin"])
        #expect(badName.status != 0 && badName.error.contains("must end in"), "\(badName.error)")
        // Profiles of different kinds are refused with a reason.
        let cpu = scratch.path + "/cpu.pb.gz"
        let cpuAnswer = try Curl.get(testee, "/profile?mode=cpu&duration=0.3&format=pprof")
        try cpuAnswer.body.write(to: URL(fileURLWithPath: cpu))
        let mismatch = try cli(["diff", base, cpu])
        #expect(mismatch.status == 1 && mismatch.error.contains("measure different things"), "\(mismatch.error)")
      }
    }
  }
}
