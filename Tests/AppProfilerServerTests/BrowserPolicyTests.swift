import Foundation
import NIOHTTP1
import Testing

@testable import AppProfilerServer

/// The Host and Origin checks, without sockets: which requests a loopback
/// server serves, refuses (421 / 403), and which CORS headers it answers with.
@Suite struct BrowserPolicyTests {
  static let speedscope = "https://www.speedscope.app"

  static func policy(
    _ bind: BindAddress = .hostname("127.0.0.1", port: 0), origins: [String]? = nil, hosts: [String] = [],
    remote: Bool = false
  ) -> BrowserPolicy {
    var configuration = ProfileServerConfiguration()
    configuration.bindAddress = bind
    if let origins { configuration.corsOrigins = origins }
    configuration.allowedHosts = hosts
    configuration.allowRemoteAccess = remote
    return BrowserPolicy(configuration: configuration)
  }

  static func headers(_ fields: [(String, String)]) -> HTTPHeaders { HTTPHeaders(fields) }

  @Test func hostHeadersParse() {
    let cases: [(String, String?)] = [
      ("localhost", "localhost"), ("LocalHost:8080", "localhost"), ("127.0.0.1:1", "127.0.0.1"), ("[::1]:7777", "::1"),
      ("[::1]", "::1"), ("evil.example:80", "evil.example"), ("a:b", nil), ("a:", nil), ("[::1", nil), ("[::1]x", nil),
      ("", nil), ("a b", nil), ("user@host", nil), ("h:123456", nil), ("::1", nil),
    ]
    for (value, expected) in cases {
      #expect(BrowserPolicy.hostName(fromHostHeader: value) == expected, "\(value)")
    }
  }

  @Test func loopbackTCPServesOnlyLoopbackNames() {
    let policy = Self.policy()
    for host in ["localhost:41000", "127.0.0.1:41000", "[::1]:41000", "LOCALHOST", "localhost:9999"] {
      #expect(policy.decide(Self.headers([("Host", host)])).refusal == nil, "\(host) refused")
    }
    for host in ["evil.example:41000", "localhost.evil.example", "127.0.0.1.nip.io:41000", "10.0.0.5:41000", "[fe80::1]", "a:b"] {
      let refusal = policy.decide(Self.headers([("Host", host)])).refusal
      #expect(refusal?.status == .misdirectedRequest, "\(host) served")
      #expect(refusal?.message.contains("is not served here") == true)
    }
    // HTTP/1.0 programs may send no Host; a browser always does.
    #expect(policy.decide(Self.headers([])).refusal == nil)
  }

  @Test func otherBindsAndConfiguredHosts() {
    // A Unix socket: no Host check (no browser reaches it).
    #expect(Self.policy(.unixDomainSocket()).decide(Self.headers([("Host", "evil.example")])).refusal == nil)
    // Names the operator lists, and `*`.
    let listed = Self.policy(hosts: ["profiler.test", "[fd00::7]"])
    #expect(listed.decide(Self.headers([("Host", "Profiler.test:8080")])).refusal == nil)
    #expect(listed.decide(Self.headers([("Host", "[fd00::7]:1")])).refusal == nil)
    #expect(listed.decide(Self.headers([("Host", "other.test")])).refusal != nil)
    #expect(Self.policy(hosts: ["*"]).decide(Self.headers([("Host", "anything.test")])).refusal == nil)
    // A remote bind (token required): the machine's addresses, not names.
    let remote = Self.policy(.hostname("0.0.0.0", port: 0), remote: true)
    #expect(remote.decide(Self.headers([("Host", "10.1.2.3:7777")])).refusal == nil)
    #expect(remote.decide(Self.headers([("Host", "[2001:db8::1]:7777")])).refusal == nil)
    #expect(remote.decide(Self.headers([("Host", "evil.example:7777")])).refusal != nil)
    // The bind address itself.
    #expect(Self.policy(.hostname("127.0.0.2", port: 0)).decide(Self.headers([("Host", "127.0.0.2:1")])).refusal == nil)
  }

  @Test func originsAreAllowListed() {
    let policy = Self.policy()
    let host = ("Host", "127.0.0.1:41000")
    let allowed = policy.decide(Self.headers([host, ("Origin", Self.speedscope)]))
    #expect(allowed.refusal == nil && allowed.allowedOrigin)
    #expect(allowed.corsHeaders.contains { $0 == ("Access-Control-Allow-Origin", Self.speedscope) })
    #expect(allowed.corsHeaders.contains { $0 == ("Vary", "Origin") })
    // Case and a trailing slash do not matter; the echo is what was sent.
    let upper = policy.decide(Self.headers([host, ("Origin", "HTTPS://WWW.SPEEDSCOPE.APP/")]))
    #expect(upper.refusal == nil && upper.corsHeaders.first?.1 == "HTTPS://WWW.SPEEDSCOPE.APP/")
    // The server's own pages: Origin is http:// + Host.
    #expect(policy.decide(Self.headers([host, ("Origin", "http://127.0.0.1:41000")])).refusal == nil)
    for origin in ["https://evil.example", "http://127.0.0.1:41001", "http://localhost:41000", "null", "https://www.speedscope.app.evil.example"] {
      let refused = policy.decide(Self.headers([host, ("Origin", origin)]))
      #expect(refused.refusal?.status == .forbidden, "\(origin) allowed")
      #expect(!refused.corsHeaders.contains { $0.0 == "Access-Control-Allow-Origin" })
    }
    // No Origin (curl, go tool pprof): served, no CORS header to give.
    let program = policy.decide(Self.headers([host]))
    #expect(program.refusal == nil && !program.corsHeaders.contains { $0.0 == "Access-Control-Allow-Origin" })
    // A page's no-cors request (img, script, navigation) names its site.
    for site in ["cross-site", "same-site"] {
      #expect(policy.decide(Self.headers([host, ("Sec-Fetch-Site", site)])).refusal?.status == .forbidden, "\(site)")
    }
    for site in ["same-origin", "none"] {
      #expect(policy.decide(Self.headers([host, ("Sec-Fetch-Site", site)])).refusal == nil, "\(site)")
    }
    // `*` written out allows every origin; an empty list only the own pages.
    let any = Self.policy(origins: ["*"]).decide(Self.headers([host, ("Origin", "https://evil.example")]))
    #expect(any.refusal == nil && any.corsHeaders.contains { $0 == ("Access-Control-Allow-Origin", "*") })
    #expect(Self.policy(origins: []).decide(Self.headers([host, ("Origin", Self.speedscope)])).refusal != nil)
    #expect(Self.policy(origins: []).decide(Self.headers([host, ("Origin", "http://127.0.0.1:41000")])).refusal == nil)
  }

  @Test func environmentListsAreValidated() throws {
    let configured = try ProfileServerConfiguration().applyingEnvironment([
      "APP_PROFILER_CORS_ORIGIN": "https://grafana.test, http://localhost:3000", "APP_PROFILER_ALLOWED_HOSTS": "profiler.test [fd00::7]",
    ])
    #expect(configured.corsOrigins == ["https://grafana.test", "http://localhost:3000"])
    #expect(configured.allowedHosts == ["profiler.test", "[fd00::7]"])
    #expect(try ProfileServerConfiguration().applyingEnvironment(["APP_PROFILER_CORS_ORIGIN": "*"]).corsOrigins == ["*"])
    #expect(ProfileServerConfiguration().corsOrigins == [Self.speedscope])
    for bad in ["evil", "https://a.test/path", "https://", "://a.test"] {
      #expect(throws: ProfileServerConfiguration.EnvironmentError.self, "\(bad)") {
        try ProfileServerConfiguration().applyingEnvironment(["APP_PROFILER_CORS_ORIGIN": bad])
      }
    }
    #expect(throws: ProfileServerConfiguration.EnvironmentError.self) {
      try ProfileServerConfiguration().applyingEnvironment(["APP_PROFILER_ALLOWED_HOSTS": "a/b"])
    }
  }
}

/// Whether `pid` has a handler for `signal` (`SigCgt` in /proc/PID/status):
/// the sampler installs its SIGPROF handler when a first profile arms it.
func catchesSignal(_ pid: Int32, _ signal: Int32 = 27) -> Bool {
  let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
  guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("SigCgt:") }),
    let mask = UInt64(line.dropFirst("SigCgt:".count).trimmingCharacters(in: .whitespaces), radix: 16)
  else { return false }
  return mask & (1 << UInt64(signal - 1)) != 0
}

extension ServerSuite {
  /// Over a real TCP socket with curl and Chromium: pages the server was not
  /// opened for are refused before the sampler is armed; every client that
  /// should work still does.
  @Suite struct BrowserRequests {
    static let speedscope = "https://www.speedscope.app"

    @Test func foreignHostAndOriginAreRefusedBeforeAnyWork() throws {
      try withTestee(arguments: ["--tcp"]) { testee in
        let port = URL(string: testee.address)!.port!
        #expect(!catchesSignal(testee.pid), "the testee armed a sampler before any request")
        let started = Date()
        let rebinding = try Curl.get(
          testee, "/profile?mode=cpu&duration=5", headers: ["Host: evil.example:\(port)", "Origin: https://evil.example"])
        #expect(rebinding.status == 421, "\(rebinding.status) \(rebinding.text)")
        #expect(rebinding.text.contains("host 'evil.example:\(port)' is not served here"))
        #expect(rebinding.headers["access-control-allow-origin"] == nil)
        let pprof = try Curl.get(testee, "/debug/pprof/profile?seconds=5", headers: ["Host: evil.example"])
        #expect(pprof.status == 421 && pprof.headers["x-go-pprof"] == "1")
        let foreign = try Curl.get(testee, "/profile?mode=cpu&duration=5", headers: ["Origin: https://evil.example"])
        #expect(foreign.status == 403, "\(foreign.status) \(foreign.text)")
        #expect(foreign.text.contains("origin 'https://evil.example' is not allowed"))
        #expect(foreign.headers["access-control-allow-origin"] == nil)
        #expect(foreign.headers["vary"] == "Origin")
        let image = try Curl.get(testee, "/profile?mode=wall&duration=5", headers: ["Sec-Fetch-Site: cross-site", "Sec-Fetch-Mode: no-cors"])
        #expect(image.status == 403, "\(image.status) \(image.text)")
        let preflight = try Curl.get(
          testee, "/profile", method: "OPTIONS",
          headers: ["Origin: https://evil.example", "Access-Control-Request-Private-Network: true"])
        #expect(preflight.status == 403 && preflight.headers["access-control-allow-private-network"] == nil)
        // Refused at once (the 5 s profiles never started) and never armed.
        #expect(Date().timeIntervalSince(started) < 4, "refusals took \(Date().timeIntervalSince(started)) s")
        #expect(!catchesSignal(testee.pid), "a refused request armed the sampler")

        // speedscope's origin is served, with its origin echoed.
        let allowed = try Curl.get(testee, "/profile?mode=cpu&duration=0.3", headers: ["Origin: \(Self.speedscope)"])
        #expect(allowed.status == 200, "\(allowed.text.prefix(300))")
        #expect(allowed.headers["access-control-allow-origin"] == Self.speedscope)
        #expect(allowed.headers["vary"] == "Origin")
        #expect(allowed.headers["access-control-expose-headers"]?.contains("Content-Disposition") == true)
        #expect(allowed.text.contains("testeeHotInner"))
        #expect(catchesSignal(testee.pid), "the check above cannot tell an armed sampler")
      }
    }

    @Test func allowedPagesAndProgramsAreServed() throws {
      try withTestee(arguments: ["--tcp"]) { testee in
        let port = URL(string: testee.address)!.port!
        // Private Network Access preflight: answered for allowed origins only.
        let preflight = try Curl.get(
          testee, "/profile", method: "OPTIONS",
          headers: ["Origin: \(Self.speedscope)", "Access-Control-Request-Method: GET", "Access-Control-Request-Private-Network: true"])
        #expect(preflight.status == 204)
        #expect(preflight.headers["access-control-allow-private-network"] == "true")
        #expect(preflight.headers["access-control-allow-origin"] == Self.speedscope)
        let plain = try Curl.get(testee, "/profile", method: "OPTIONS", headers: ["Origin: \(Self.speedscope)"])
        #expect(plain.status == 204 && plain.headers["access-control-allow-private-network"] == nil)
        // Loopback names with any port (kubectl port-forward maps ports), and the own origin.
        for host in ["localhost:\(port)", "[::1]:\(port)", "127.0.0.1", "localhost:8080"] {
          let answer = try Curl.get(testee, "/debug/pprof/", headers: ["Host: \(host)"])
          #expect(answer.status == 200, "Host \(host): \(answer.status)")
        }
        let own = try Curl.get(testee, "/profile?duration=0.2&format=collapsed", headers: ["Origin: http://127.0.0.1:\(port)"])
        #expect(own.status == 200 && own.headers["access-control-allow-origin"] == "http://127.0.0.1:\(port)")
        // A program: no Origin, no CORS header, served.
        let program = try Curl.get(testee, "/debug/pprof/profile?seconds=0.2")
        #expect(program.status == 200 && program.headers["access-control-allow-origin"] == nil)
      }
    }

    @Test func configuredOriginsAndHosts() throws {
      let environment = ["APP_PROFILER_CORS_ORIGIN": "https://grafana.test", "APP_PROFILER_ALLOWED_HOSTS": "profiler.test"]
      try withTestee(arguments: ["--tcp"], environment: environment) { testee in
        let port = URL(string: testee.address)!.port!
        let named = try Curl.get(testee, "/debug/pprof/", headers: ["Host: profiler.test:\(port)"])
        #expect(named.status == 200)
        let grafana = try Curl.get(testee, "/debug/pprof/", headers: ["Origin: https://grafana.test"])
        #expect(grafana.status == 200 && grafana.headers["access-control-allow-origin"] == "https://grafana.test")
        // The list replaces the default.
        let speedscope = try Curl.get(testee, "/debug/pprof/", headers: ["Origin: \(Self.speedscope)"])
        #expect(speedscope.status == 403)
      }
      try withTestee(arguments: ["--tcp"], environment: ["APP_PROFILER_CORS_ORIGIN": "*"]) { testee in
        let any = try Curl.get(testee, "/debug/pprof/", headers: ["Origin: https://evil.example"])
        #expect(any.status == 200 && any.headers["access-control-allow-origin"] == "*")
        // `*` opens origins, not hosts.
        let evil = try Curl.get(testee, "/debug/pprof/", headers: ["Host: evil.example"])
        #expect(evil.status == 421)
      }
    }

    @Test func unixSocketHasNoHostCheck() throws {
      try withTestee { testee in
        #expect(testee.isUnix)
        let evil = try Curl.get(testee, "/debug/pprof/", headers: ["Host: evil.example"])
        #expect(evil.status == 200)
      }
    }

    /// A real browser on a page of another origin (a server of its own on
    /// another port): its fetch fails and the testee never arms a sampler;
    /// once that origin is allowed the page reads the profile.
    @Test func aPageOfAnotherOriginInChromium() throws {
      let scratch = TemporaryDirectory()
      defer { scratch.remove() }
      let page = OtherOriginPage(directory: scratch.path)
      defer { page.stop() }
      let origin = try page.start()
      func visit(_ testee: Testee) throws -> String {
        try page.write(target: testee.address + "/profile?mode=cpu&duration=0.5&format=collapsed")
        let dump = try chromiumDump(origin + "/page.html", scratch: scratch.path, budgetMilliseconds: 10_000)
        let marker = try #require(dump.dom.firstRange(of: "data-result=\""), "no result in \(dump.dom.prefix(500))")
        return String(dump.dom[marker.upperBound...].prefix { $0 != "\"" })
      }
      try withTestee(arguments: ["--tcp"]) { testee in
        let result = try visit(testee)
        #expect(result.hasPrefix("error"), "the page read a profile: \(result.prefix(200))")
        #expect(!catchesSignal(testee.pid), "the page's request armed the sampler")
      }
      try withTestee(arguments: ["--tcp"], environment: ["APP_PROFILER_CORS_ORIGIN": origin]) { testee in
        let result = try visit(testee)
        #expect(result.hasPrefix("ok") && result.contains("testeeHotInner"), "\(result.prefix(300))")
      }
    }
  }
}

/// A page on `http://127.0.0.1:<port>` served by Python's http.server: it
/// fetches one URL and writes what it got into `data-result` on its body.
final class OtherOriginPage: @unchecked Sendable {
  let directory: String
  private let process = Process()

  init(directory: String) { self.directory = directory }

  /// Starts the server; returns its origin.
  func start() throws -> String {
    let script = """
      import http.server, functools, sys
      handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])
      server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
      print(server.server_address[1], flush=True)
      server.serve_forever()
      """
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["python3", "-c", script, directory]
    let output = Pipe()
    process.standardOutput = output
    process.standardError = FileHandle.nullDevice
    try process.run()
    var line = Data()
    while !line.contains(UInt8(ascii: "\n")) {
      let chunk = output.fileHandleForReading.availableData
      if chunk.isEmpty { break }
      line += chunk
    }
    let port = String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    guard Int(port) != nil else { throw Testee.StartError(message: "python http.server did not start: \(port)") }
    return "http://127.0.0.1:\(port)"
  }

  func write(target: String) throws {
    let html = """
      <!DOCTYPE html><html><body><script>
      fetch(\(String(reflecting: target)))
        .then(function (r) { return r.text().then(function (t) { document.body.setAttribute("data-result", (r.ok ? "ok " : "error " + r.status + " ") + t.replace(/"/g, "'")); }); })
        .catch(function (e) { document.body.setAttribute("data-result", "error " + e); });
      </script></body></html>
      """
    try html.write(toFile: directory + "/page.html", atomically: true, encoding: .utf8)
  }

  func stop() {
    // SIGKILL: the test runner's children may inherit SIGTERM ignored.
    if process.isRunning {
      kill(process.processIdentifier, SIGKILL)
      process.waitUntilExit()
    }
  }
}
