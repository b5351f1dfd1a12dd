import Foundation
import Testing

extension ServerSuite {
  /// Acceptance 1: profiles over the Unix socket and TCP contain the child's hot function.
  @Suite struct ProfileEndpoint {
    @Test(arguments: [[], ["--tcp"]], ["cpu", "wall"])
    func profileContainsHotFunction(transport: [String], mode: String) throws {
      try withTestee(arguments: transport) { testee in
        let answer = try Curl.get(testee, "/profile?mode=\(mode)&duration=0.5")
        #expect(answer.status == 200, "\(answer.text)")
        #expect(answer.headers["content-type"] == "application/json")
        #expect(answer.headers["access-control-allow-origin"] == "*")
        #expect(answer.headers["x-content-type-options"] == "nosniff")
        let json = try #require(try JSONSerialization.jsonObject(with: answer.body) as? [String: Any])
        #expect(json["$schema"] as? String == "https://www.speedscope.app/file-format-schema.json")
        let frames = (json["shared"] as? [String: Any])?["frames"] as? [[String: Any]] ?? []
        #expect(frames.contains { ($0["name"] as? String)?.contains("testeeHotInner") == true })
        if transport.isEmpty { #expect(testee.isUnix) } else { #expect(testee.address.hasPrefix("http://127.0.0.1:")) }
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
