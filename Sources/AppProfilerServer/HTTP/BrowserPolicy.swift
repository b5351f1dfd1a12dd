import NIOHTTP1

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Which web pages may use the server, decided from a request's head before
/// any work starts.
///
/// A loopback server is reachable by every page open in the developer's
/// browser. Two attacks follow, and each has its check:
/// - **DNS rebinding**: a page of `evil.example` makes its own name resolve
///   to 127.0.0.1, and the browser then treats our answers as same-origin.
///   The request still carries `Host: evil.example:PORT`, so on TCP only
///   loopback names and addresses (and names the operator lists) are
///   served: anything else gets 421. The port is not checked: behind
///   `kubectl port-forward` or an SSH tunnel the client's port differs from
///   ours, and a rebinding attack is defeated by the name alone.
/// - **Cross-origin requests**: a page can send a GET to any address
///   without asking; CORS only decides whether it may *read* the answer.
///   Here the request itself costs the app (a profile runs), so a request
///   whose `Origin` is not allowed is refused (403) before anything starts,
///   as is a cross-site request that carries no `Origin` at all (an `<img>`,
///   a `<script>`, a navigation: the browser says `Sec-Fetch-Site`).
///   Allowed: the listed origins (default speedscope's), and the server's
///   own pages (`Origin` equal to `http://` + `Host`).
///
/// Requests from programs (curl, go tool pprof, the CLI, scrapers) carry no
/// `Origin` and no `Sec-Fetch-Site` and are served as before.
struct BrowserPolicy: Sendable {
  /// Host names and addresses served on TCP (lowercased, IPv6 without
  /// brackets); nil on a Unix socket or with `*` listed: no Host check.
  let hosts: Set<String>?
  /// A non-loopback bind (remote access, which requires a bearer token):
  /// clients reach it by any of the machine's addresses, and an address
  /// literal in `Host` cannot come from a rebinding attack (that needs the
  /// attacker's name).
  let anyAddressLiteral: Bool
  let origins: Set<String>
  let anyOrigin: Bool

  /// Names every loopback TCP server answers to.
  static let loopbackNames: Set<String> = ["localhost", "127.0.0.1", "::1"]

  init(configuration: ProfileServerConfiguration) {
    let configuredHosts = configuration.allowedHosts.compactMap { Self.hostName(fromHostHeader: $0) }
    switch configuration.bindAddress.kind {
    case .unixDomainSocket:
      hosts = nil
      anyAddressLiteral = false
    case .hostname(let host, _):
      if configuration.allowedHosts.contains("*") {
        hosts = nil
      } else {
        var names = Self.loopbackNames.union(configuredHosts)
        if let bound = Self.hostName(fromHostHeader: host.contains(":") ? "[\(host)]" : host) { names.insert(bound) }
        hosts = names
      }
      anyAddressLiteral = !configuration.bindAddress.isLoopback
    }
    anyOrigin = configuration.corsOrigins.contains("*")
    origins = Set(configuration.corsOrigins.map(Self.normalizedOrigin))
  }

  /// What to do with a request: serve it (with these CORS headers on its
  /// answer) or refuse it.
  struct Decision: Sendable {
    var refusal: RequestError?
    /// `Access-Control-Allow-Origin` and `Vary` for the answer.
    var corsHeaders: [(String, String)]
    /// The request came from an allowed page (its origin or `*` echoed).
    var allowedOrigin: Bool
  }

  func decide(_ headers: HTTPHeaders) -> Decision {
    let host = headers.first(name: "Host")
    if let hosts, let host {
      let name = Self.hostName(fromHostHeader: host)
      let served = name.map { hosts.contains($0) || (anyAddressLiteral && Self.isAddressLiteral($0)) } ?? false
      if !served {
        return Decision(
          refusal: RequestError(
            status: .misdirectedRequest,
            message:
              "host '\(host.prefix(200))' is not served here: this server answers localhost, 127.0.0.1 and [::1] (APP_PROFILER_ALLOWED_HOSTS adds names); a page reaching it under another name is refused"
          ), corsHeaders: [], allowedOrigin: false)
      }
    }
    let vary: [(String, String)] = anyOrigin ? [] : [("Vary", "Origin")]
    guard let origin = headers.first(name: "Origin") else {
      // No Origin: a program, a same-origin GET, or a no-cors request of a
      // page (img, script, navigation), which modern browsers mark.
      let site = headers.first(name: "Sec-Fetch-Site")?.lowercased()
      if site == "cross-site" || site == "same-site" {
        return Decision(
          refusal: RequestError(
            status: .forbidden,
            message: "a request from a page of another site (Sec-Fetch-Site: \(site!)) is refused; open the URL directly or fetch it from an allowed origin (APP_PROFILER_CORS_ORIGIN)"),
          corsHeaders: vary, allowedOrigin: false)
      }
      return Decision(refusal: nil, corsHeaders: anyOrigin ? [("Access-Control-Allow-Origin", "*")] : vary, allowedOrigin: false)
    }
    let normalized = Self.normalizedOrigin(origin)
    let own = host.map { "http://" + $0.lowercased() }
    if anyOrigin {
      return Decision(refusal: nil, corsHeaders: [("Access-Control-Allow-Origin", "*")], allowedOrigin: true)
    }
    if origins.contains(normalized) || normalized == own {
      return Decision(refusal: nil, corsHeaders: [("Access-Control-Allow-Origin", origin)] + vary, allowedOrigin: true)
    }
    return Decision(
      refusal: RequestError(
        status: .forbidden,
        message:
          "origin '\(origin.prefix(200))' is not allowed: a page may use this server only from its own pages or an origin in APP_PROFILER_CORS_ORIGIN (default https://www.speedscope.app)"
      ), corsHeaders: vary, allowedOrigin: false)
  }

  /// The host part of a `Host` header (or a configured name), lowercased,
  /// IPv6 without brackets; nil when it is not `name`, `name:port`,
  /// `[v6]` or `[v6]:port`.
  static func hostName(fromHostHeader value: String) -> String? {
    let text = value.trimmingSpaces().lowercased()
    let host: Substring
    let rest: Substring
    if text.hasPrefix("[") {
      guard let close = text.firstIndex(of: "]") else { return nil }
      host = text[text.index(after: text.startIndex)..<close]
      rest = text[text.index(after: close)...]
    } else if let colon = text.firstIndex(of: ":") {
      host = text[..<colon]
      rest = text[colon...]
    } else {
      host = text[...]
      rest = ""
    }
    if !rest.isEmpty {
      let port = rest.dropFirst()
      guard rest.first == ":", !port.isEmpty, port.count <= 5, port.allSatisfy({ $0.isASCII && $0.isNumber }) else {
        return nil
      }
    }
    guard !host.isEmpty, !host.contains(where: { $0 == " " || $0 == "/" || $0 == "@" }) else { return nil }
    return String(host)
  }

  /// An IPv4 or IPv6 address (not a name).
  static func isAddressLiteral(_ host: String) -> Bool {
    var v4 = in_addr()
    var v6 = in6_addr()
    return inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1
  }

  /// Origins compare case-insensitively, without a trailing slash.
  static func normalizedOrigin(_ origin: String) -> String {
    var text = origin.trimmingSpaces().lowercased()
    while text.hasSuffix("/") { text.removeLast() }
    return text
  }
}

/// True when a `Host` header names loopback (`localhost`, `127.0.0.1`,
/// `[::1]`, any port): the CLI's own page server (`app-profiler view`)
/// refuses other names as the profile server does (DNS rebinding).
@_spi(CLI) public func hostHeaderNamesLoopback(_ value: String) -> Bool {
  BrowserPolicy.hostName(fromHostHeader: value).map(BrowserPolicy.loopbackNames.contains) ?? false
}

extension String {
  func trimmingSpaces() -> String {
    var slice = self[...]
    while slice.first == " " || slice.first == "\t" { slice = slice.dropFirst() }
    while slice.last == " " || slice.last == "\t" { slice = slice.dropLast() }
    return String(slice)
  }
}
