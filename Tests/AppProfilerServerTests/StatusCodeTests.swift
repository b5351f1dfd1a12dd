import Foundation
import Testing

extension ServerSuite {
  /// Acceptance 2 and 3: every status code with its message, CORS on errors,
  /// Retry-After on 409; concurrent requests of one kind share a sampler,
  /// other kinds run next to it, the same kind at another interval gets 409.
  @Suite struct StatusCodes {
    @Test func badParametersAre400NamingTheParameter() throws {
      try withTestee { testee in
        let cases: [(String, String)] = [
          ("/profile?duration=abc", "duration"),
          ("/profile?duration=0", "0 < duration ≤ 300"),
          ("/profile?duration=301", "duration"),
          ("/profile?duration=-1", "duration"),
          ("/profile?mode=gpu", "mode"),
          ("/profile?mode=object&interval=0", "bytes between allocation samples, 1 ... 1073741824"),
          ("/profile?mode=alloc&interval=1073741825", "interval"),
          ("/debug/pprof/allocs?seconds=x", "seconds"),
          ("/profile?interval=50", "100 ... 1000000"),
          ("/profile?interval=x", "interval"),
          ("/profile?format=pdf", "format"),
          ("/profile?engine=hw", "allowed auto, perf, timer"),
          ("/profile?mode=wall&engine=timer", "mode=cpu only"),
          ("/profile?colour=blue", "unknown parameter 'colour'"),
          ("/profile?mode=cpu&mode=wall", "more than once"),
          ("/threads?format=xml", "format"),
        ]
        for (target, fragment) in cases {
          let answer = try Curl.get(testee, target, headers: ["Origin: https://www.speedscope.app"])
          #expect(answer.status == 400, "\(target): \(answer.status)")
          #expect(answer.text.contains(fragment), "\(target): \(answer.text)")
          #expect(answer.headers["access-control-allow-origin"] == "https://www.speedscope.app", "\(target) lacks CORS")
          #expect(answer.headers["content-type"] == "text/plain; charset=utf-8")
        }
      }
    }

    @Test func notFoundMethodNotAllowedAndPreflight() throws {
      try withTestee { testee in
        let missing = try Curl.get(testee, "/nope", headers: ["Origin: https://www.speedscope.app"])
        #expect(missing.status == 404)
        #expect(missing.text.contains("/nope"))
        #expect(missing.headers["access-control-allow-origin"] == "https://www.speedscope.app")
        let post = try Curl.get(testee, "/profile", method: "POST", headers: ["Origin: https://www.speedscope.app"])
        #expect(post.status == 405)
        #expect(post.headers["allow"] == "GET, HEAD, OPTIONS")
        #expect(post.headers["access-control-allow-origin"] == "https://www.speedscope.app")
        let preflight = try Curl.get(testee, "/profile", method: "OPTIONS", headers: ["Origin: https://www.speedscope.app"])
        #expect(preflight.status == 204)
        #expect(preflight.headers["access-control-allow-methods"]?.contains("GET") == true)
        #expect(preflight.headers["access-control-allow-origin"] == "https://www.speedscope.app")
      }
    }

    @Test(.disabled(if: underSlowSanitizer, "time bounds sized for the uninstrumented server; TSan and ASan slow it 2–20×"))
    func conflictWhileProfilingHasRetryAfter() throws {
      try withTestee { testee in
        let long = try RawConnection(testee)
        long.send("GET /profile?duration=3&mode=wall HTTP/1.1\r\nHost: x\r\n\r\n")
        usleep(300_000)
        // wall at another interval while wall runs: the kind is taken (the
        // same interval would share; cpu runs next to it).
        let answer = try Curl.get(testee, "/profile?duration=1&mode=wall&interval=2000", headers: ["Origin: https://www.speedscope.app"])
        #expect(answer.status == 409)
        let retry = Int(answer.headers["retry-after"] ?? "") ?? 0
        #expect((1...3).contains(retry), "Retry-After \(retry)")
        #expect(answer.headers["access-control-allow-origin"] == "https://www.speedscope.app")
        #expect(answer.text.contains("already running"))
        // Without an interval a request shares the running sampler, whatever its interval.
        let joining = try Curl.get(testee, "/profile?duration=0.5&mode=wall&format=collapsed")
        #expect(joining.status == 200, "\(joining.text.prefix(300))")
        // A thread dump has a sampler of its own.
        let threads = try Curl.get(testee, "/threads")
        #expect(threads.status == 200)
        #expect(try Curl.get(testee, "/profile?duration=0.5").status == 200)
        let first = long.readAll(timeout: 10).map(RawConnection.parse)
        #expect(first?.status == 200)
      }
    }

    /// Sixteen requests at once, eight cpu and eight wall: each kind serves
    /// all eight of its requests from one sampler, both kinds at once.
    @Test func concurrentRequestsShareEachKind() throws {
      try withTestee { testee in
        let statuses = Statuses()
        let group = DispatchGroup()
        for index in 0..<16 {
          let mode = index % 2 == 0 ? "cpu" : "wall"
          group.enter()
          Thread.detachNewThread {
            let answer = try? RawConnection.request(testee, "GET /profile?duration=1&mode=\(mode) HTTP/1.1\r\nHost: x\r\n\r\n")
            statuses.append(mode == "cpu" ? (answer?.status ?? -1) : -(answer?.status ?? -1))
            group.leave()
          }
        }
        #expect(group.wait(timeout: .now() + 60) == .success)
        let all = statuses.values
        let cpu = all.filter { $0 > 0 }
        let wall = all.filter { $0 < 0 }.map { -$0 }
        #expect(cpu.count == 8 && wall.count == 8 && (cpu + wall).allSatisfy { $0 == 200 }, "cpu \(cpu), wall \(wall)")
        let next = try Curl.get(testee, "/profile?duration=0.2")
        #expect(next.status == 200)
      }
    }

    @Test(.disabled(if: underSlowSanitizer, "time bounds sized for the uninstrumented server; TSan and ASan slow it 2–20×"))
    func clientDisconnectStopsTheSession() throws {
      try withTestee { testee in
        do {
          let connection = try RawConnection(testee)
          connection.send("GET /profile?duration=10 HTTP/1.1\r\nHost: x\r\n\r\n")
          usleep(100_000)
        }  // closed here
        let closed = Date()
        var answer = try Curl.get(testee, "/profile?duration=0.1")
        while answer.status == 409 && Date().timeIntervalSince(closed) < 6 {
          usleep(50_000)
          answer = try Curl.get(testee, "/profile?duration=0.1")
        }
        let elapsed = Date().timeIntervalSince(closed)
        print("disconnect: next profile got \(answer.status) after \(elapsed) s")
        #expect(answer.status == 200)
        // The abandoned session asked for 10 s. The bound leaves room for the
        // next profile's own cold symbolization of the debug testee (up to
        // ~2 s on a busy 2-core machine), which is part of `elapsed`.
        #expect(elapsed < 5)
      }
    }
  }
}

final class Statuses: @unchecked Sendable {
  private let lock = NSLock()
  private var list: [Int] = []
  func append(_ value: Int) { lock.withLock { list.append(value) } }
  var values: [Int] { lock.withLock { list } }
}
