@_spi(Support) import AppProfiler
import NIOCore
import NIOHTTP1

/// One connection: one request, one answer, then close.
///
/// Limits enforced here: the whole request must arrive within
/// `requestHeadTimeout` (408), a request line over 8 KiB gets 414, more than
/// 100 header fields or a head over `maxRequestHeadBytes` 431 (the first
/// three checked on the raw bytes by `RequestHeadLimiter`), a body over
/// 1 MiB 413, a malformed request 400. After an answer to a request that was
/// cut off, the connection stays half-closed for a moment so the client
/// reads the answer instead of a reset. A client that disconnects while its
/// profile runs cancels the profile.
final class ProfileServerHandler: ChannelInboundHandler, RemovableChannelHandler {
  typealias InboundIn = HTTPServerRequestPart
  typealias OutboundOut = HTTPServerResponsePart

  static let maxRequestLine = 8 * 1024
  /// Header fields a request may have. 100: browsers send ~20, curl 3.
  static let maxHeaderFields = 100
  /// How long a connection whose request was cut off stays half-closed.
  static let linger: TimeAmount = .seconds(2)
  /// Bodies are only read by POST /debug/pprof/symbol (addresses as text).
  static let maxBody = 1024 * 1024

  private let coordinator: ProfileCoordinator
  private var head: HTTPRequestHead?
  private var bodyBytes = 0
  private var body: [UInt8] = []
  private var timeout: Scheduled<Void>?
  /// Set when the client goes away: the running profile stops early.
  private var cancellation: RecordingCancellation?
  private var responded = false
  /// Errors on /debug/pprof/* carry `X-Go-Pprof: 1`, so go tool pprof prints them.
  private var pprofPath = false
  /// What the browser policy said of this request (none before its head).
  private var browser: BrowserPolicy.Decision?

  init(coordinator: ProfileCoordinator) {
    self.coordinator = coordinator
  }

  func handlerAdded(context: ChannelHandlerContext) {
    let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
    let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
    let seconds = coordinator.configuration.requestHeadTimeout.components.seconds
    timeout = context.eventLoop.scheduleTask(in: .nanoseconds(Int64(coordinator.configuration.requestHeadTimeout.nanosecondsValue))) {
      handler.value.send(
        context: bound.value, .error(.requestTimeout, "request not received within \(seconds) s"), headOnly: false)
    }
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    guard !responded else { return }
    switch unwrapInboundIn(data) {
    case .head(let head):
      self.head = head
      browser = coordinator.browserPolicy.decide(head.headers)
      if head.uri.utf8.count > Self.maxRequestLine {
        send(context: context, .error(.uriTooLong, "request target longer than \(Self.maxRequestLine) bytes"), headOnly: false)
      }
    case .body(let buffer):
      bodyBytes += buffer.readableBytes
      if bodyBytes <= Self.maxBody { body += buffer.readableBytesView }
      if bodyBytes > Self.maxBody {
        send(context: context, .error(.payloadTooLarge, "request body larger than \(Self.maxBody) bytes"), headOnly: false)
      }
    case .end:
      timeout?.cancel()
      if let head { dispatch(context: context, head: head) }
    }
  }

  func errorCaught(context: ChannelHandlerContext, error: any Error) {
    guard !responded else {
      context.close(promise: nil)
      return
    }
    if let violation = error as? RequestHeadLimiter.Violation {
      switch violation {
      case .requestLineTooLong(let limit):
        send(context: context, .error(.uriTooLong, "request line longer than \(limit) bytes"), headOnly: false, linger: true)
      case .tooManyHeaderFields(let limit):
        send(
          context: context, .error(.requestHeaderFieldsTooLarge, "too many header fields: more than \(limit)"),
          headOnly: false, linger: true)
      case .headTooLarge(let limit):
        send(
          context: context, .error(.requestHeaderFieldsTooLarge, "request headers larger than \(limit) bytes"),
          headOnly: false, linger: true)
      }
    } else if let parserError = error as? HTTPParserError {
      if case .headerOverflow = parserError {
        send(
          context: context,
          .error(.requestHeaderFieldsTooLarge, "request headers larger than \(coordinator.configuration.maxRequestHeadBytes) bytes"),
          headOnly: false)
      } else {
        send(context: context, .error(.badRequest, "malformed HTTP request: \(parserError)"), headOnly: false)
      }
    } else {
      context.close(promise: nil)
    }
  }

  func channelInactive(context: ChannelHandlerContext) {
    timeout?.cancel()
    cancellation?.cancel()  // the client is gone: stop its profile now
    context.fireChannelInactive()
  }

  private func dispatch(context: ChannelHandlerContext, head: HTTPRequestHead) {
    let query: HTTPQuery
    do {
      query = try HTTPQuery(target: head.uri)
    } catch {
      send(context: context, .error(.badRequest, "malformed request target: \(head.uri)"), headOnly: false)
      return
    }
    // Pages the server was not opened for are refused before any work
    // (BrowserPolicy): a foreign Host (DNS rebinding), a foreign Origin.
    if let refusal = browser?.refusal {
      pprofPath = Routes.match(query.path)?.isPprof ?? false  // go tool pprof prints the reason
      send(context: context, .error(refusal.status, refusal.message), headOnly: head.method == .HEAD)
      return
    }
    if head.method == .OPTIONS {
      // CORS preflight: browsers send it before a cross-origin GET with headers,
      // and (Private Network Access) before a public page's request to loopback.
      var headers = [
        ("Allow", "GET, HEAD, OPTIONS"),
        ("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS"),
        ("Access-Control-Allow-Headers", "Authorization, Content-Type"),
        ("Access-Control-Max-Age", "600"),
      ]
      if browser?.allowedOrigin == true,
        head.headers.first(name: "Access-Control-Request-Private-Network")?.lowercased() == "true"
      {
        headers.append(("Access-Control-Allow-Private-Network", "true"))
      }
      send(context: context, HTTPResponse(status: .noContent, headers: headers), headOnly: true)
      return
    }
    guard coordinator.isAuthorized(head.headers) else {
      send(
        context: context, .error(.unauthorized, "missing or wrong bearer token", headers: [("WWW-Authenticate", "Bearer")]),
        headOnly: false)
      return
    }
    guard let route = Routes.match(query.path) else {
      send(context: context, .error(.notFound, "no such path: \(query.path); GET / lists the endpoints"), headOnly: false)
      return
    }
    pprofPath = route.isPprof
    guard head.method == .GET || head.method == .HEAD || (head.method == .POST && route.acceptsPost) else {
      send(
        context: context,
        .error(.methodNotAllowed, "method \(head.method.rawValue) not allowed on \(route.path); use GET", headers: [("Allow", "GET, HEAD, OPTIONS")]),
        headOnly: false)
      return
    }
    let headOnly = head.method == .HEAD
    let action: RouteAction
    do throws(RequestError) {
      action = try route.handle(RouteRequest(query: query, method: head.method, body: body, coordinator: coordinator))
    } catch {
      // A route's parameters were refused (QueryParameters): the one error path.
      action = .respond(.error(error.status, error.message))
    }
    switch action {
    case .respond(let response): send(context: context, response, headOnly: headOnly)
    case .run(let work): run(context: context, headOnly: headOnly, work)
    }
  }

  /// Runs slow work off the event loop, on a thread of its own (never the
  /// cooperative pool: a process whose pool is blocked must still answer),
  /// and answers when it is done.
  private func run(
    context: ChannelHandlerContext, headOnly: Bool,
    _ body: @escaping @Sendable (ProfileCoordinator, RecordingCancellation) -> HTTPResponse
  ) {
    let eventLoop = context.eventLoop
    let handler = NIOLoopBound(self, eventLoop: eventLoop)
    let bound = NIOLoopBound(context, eventLoop: eventLoop)
    let coordinator = self.coordinator
    let cancel = RecordingCancellation()
    cancellation = cancel
    let thread = ProfilerThread(name: "app-prof-req") {
      let response = body(coordinator, cancel)
      eventLoop.execute {
        handler.value.send(context: bound.value, response, headOnly: headOnly)
      }
      // What building the answer freed (the profile, symbolization).
      FreedMemory.release()
    }
    guard thread.isRunning else {
      send(context: context, .error(.serviceUnavailable, "cannot start a thread for this request"), headOnly: headOnly)
      return
    }
  }

  /// Writes an answer with the headers every answer carries, then closes
  /// (with `linger`: closes the output, and the rest after ``linger`` or when
  /// the client closes, so unread request bytes do not turn into a reset).
  func send(context: ChannelHandlerContext, _ response: HTTPResponse, headOnly: Bool, linger: Bool = false) {
    guard !responded else { return }
    responded = true
    timeout?.cancel()
    var headers = HTTPHeaders(response.headers)
    if pprofPath && response.status.code >= 400 {
      headers.replaceOrAdd(name: "X-Go-Pprof", value: "1")
      headers.replaceOrAdd(name: "Content-Type", value: "text/plain; charset=utf-8")
    }
    headers.replaceOrAdd(name: "Content-Length", value: String(response.body.count))
    headers.replaceOrAdd(name: "Connection", value: "close")
    headers.replaceOrAdd(name: "X-Content-Type-Options", value: "nosniff")
    headers.replaceOrAdd(name: "Cache-Control", value: "no-store")
    headers.replaceOrAdd(name: "Server", value: "swift-app-profiler/\(AppProfilerVersion.current)")
    for (name, value) in browser?.corsHeaders ?? [] { headers.replaceOrAdd(name: name, value: value) }
    if browser?.allowedOrigin == true || headers.contains(name: "Access-Control-Allow-Origin") {
      headers.replaceOrAdd(name: "Access-Control-Expose-Headers", value: "Retry-After, Content-Disposition")
    }
    context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: response.status, headers: headers))), promise: nil)
    if !headOnly && !response.body.isEmpty {
      context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: response.body)))), promise: nil)
    }
    let channel = context.channel
    let done = context.eventLoop.makePromise(of: Void.self)
    context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: done)
    guard linger else {
      done.futureResult.whenComplete { _ in channel.close(promise: nil) }
      return
    }
    let eventLoop = context.eventLoop
    done.futureResult.whenComplete { _ in
      let halfClosed = eventLoop.makePromise(of: Void.self)
      channel.close(mode: .output, promise: halfClosed)
      halfClosed.futureResult.whenComplete { result in
        if case .failure = result {
          channel.close(promise: nil)
        } else {
          eventLoop.scheduleTask(in: Self.linger) { channel.close(promise: nil) }
        }
      }
    }
  }
}

extension Duration {
  var nanosecondsValue: UInt64 {
    let (seconds, attoseconds) = components
    return UInt64(max(seconds, 0)) * 1_000_000_000 + UInt64(max(attoseconds, 0) / 1_000_000_000)
  }
}
