import Foundation
import Testing

extension ServerSuite {
  /// Acceptance 1: profiles over the Unix socket and TCP contain the child's hot function.
  @Suite struct ProfileEndpoint {
    @Test(arguments: [[], ["--tcp"]], ["cpu", "wall"])
    func profileContainsHotFunction(transport: [String], mode: String) throws {
      try withTestee(arguments: transport) { testee in
        let answer = try Curl.get(testee, "/profile?mode=\(mode)&duration=0.5", headers: ["Origin: https://www.speedscope.app"])
        #expect(answer.status == 200, "\(answer.text)")
        #expect(answer.headers["content-type"] == "application/json")
        #expect(answer.headers["access-control-allow-origin"] == "https://www.speedscope.app")
        #expect(answer.headers["x-content-type-options"] == "nosniff")
        let json = try #require(try JSONSerialization.jsonObject(with: answer.body) as? [String: Any])
        #expect(json["$schema"] as? String == "https://www.speedscope.app/file-format-schema.json")
        let frames = (json["shared"] as? [String: Any])?["frames"] as? [[String: Any]] ?? []
        #expect(frames.contains { ($0["name"] as? String)?.contains("testeeHotInner") == true })
        // Swift functions of the (-g) testee carry their file and a line.
        let hot = frames.first { ($0["name"] as? String)?.contains("testeeHotInner") == true }
        #expect((hot?["file"] as? String)?.hasSuffix(".swift") == true && (hot?["line"] as? Int ?? 0) > 0, "\(hot ?? [:])")
        let withFile = frames.filter { ($0["file"] as? String)?.hasSuffix(".swift") == true }
        #expect(!withFile.isEmpty && withFile.allSatisfy { ($0["line"] as? Int ?? 0) > 0 }, "\(withFile.filter { $0["line"] == nil }.prefix(3))")
        if transport.isEmpty { #expect(testee.isUnix) } else { #expect(testee.address.hasPrefix("http://127.0.0.1:")) }
      }
    }

    /// `engine=` picks the cpu engine per request; the profile names the one
    /// that ran. `auto` at 100 Hz (≥ one tick on any Linux) uses POSIX timers.
    @Test func engineParameterPicksTheCPUEngine() throws {
      try withTestee { testee in
        func engine(_ query: String) throws -> String {
          let answer = try Curl.get(testee, "/profile?mode=cpu&duration=0.3&\(query)")
          #expect(answer.status == 200, "\(query): \(answer.text)")
          let json = try JSONSerialization.jsonObject(with: answer.body) as? [String: Any]
          let name = (json?["x-app-profiler"] as? [String: Any])?["engine"] as? String ?? "?"
          let frames = (json?["shared"] as? [String: Any])?["frames"] as? [[String: Any]] ?? []
          #expect(frames.contains { ($0["name"] as? String)?.contains("testeeHotInner") == true }, "\(query)")
          return name
        }
        #expect(try engine("engine=timer").hasPrefix("posix_timer"))
        #expect(try engine("engine=ticker").hasPrefix("cpu_ticker"))
        #expect(try engine("interval=10000").hasPrefix("posix_timer"))
        #expect(try engine("interval=10000&engine=auto").hasPrefix("posix_timer"))
        // perf events where the kernel allows them; a clear error otherwise.
        let perf = try Curl.get(testee, "/profile?mode=cpu&duration=0.3&engine=perf")
        if perf.status == 200 {
          #expect(try engine("engine=perf").hasPrefix("perf_event"))
        } else {
          #expect(perf.text.contains("perf_event_open"), "\(perf.status): \(perf.text)")
        }
      }
    }

    @Test func headAnswersWithoutBody() throws {
      try withTestee { testee in
        let answer = try #require(try RawConnection.request(testee, "HEAD /profile?duration=0.1 HTTP/1.1\r\nHost: x\r\n\r\n"))
        #expect(answer.status == 200)
        #expect(answer.body.isEmpty)
        #expect(Int(answer.headers["content-length"] ?? "0") ?? 0 > 0)
        #expect(answer.headers["content-type"] == "application/json")
      }
    }

    @Test func threadsShowsEveryThread() throws {
      try withTestee { testee in
        let text = try Curl.get(testee, "/threads")
        #expect(text.status == 200)
        #expect(text.text.contains("testee-hot"))
        #expect(text.text.contains("testeeHotInner") || text.text.contains("testeeHotLoop"))
        #expect(text.text.contains("testee-blocked"))
        let json = try Curl.get(testee, "/threads?format=json")
        let object = try #require(try JSONSerialization.jsonObject(with: json.body) as? [String: Any])
        let threads = object["threads"] as? [[String: Any]] ?? []
        #expect(threads.count >= 3)
        #expect(threads.contains { ($0["name"] as? String) == "testee-blocked" && ($0["idle"] as? Bool) == true })
      }
    }

    @Test func indexListsEndpoints() throws {
      try withTestee { testee in
        let answer = try Curl.get(testee, "/")
        #expect(answer.status == 200)
        #expect(answer.text.contains("/profile"))
        #expect(answer.text.contains("/threads"))
      }
    }
  }
}
