import NIOHTTP1

/// One answer of the server. Every answer goes through
/// `ProfileServerHandler.send`, which adds the headers all answers carry
/// (CORS, `nosniff`, `no-store`, `Connection: close`, `Content-Length`).
struct HTTPResponse: Sendable {
  var status: HTTPResponseStatus
  var headers: [(String, String)]
  var body: [UInt8]

  init(status: HTTPResponseStatus, headers: [(String, String)] = [], body: [UInt8] = []) {
    self.status = status
    self.headers = headers
    self.body = body
  }

  /// The one error path: plain text naming the problem.
  static func error(_ status: HTTPResponseStatus, _ message: String, headers: [(String, String)] = []) -> HTTPResponse {
    HTTPResponse(
      status: status, headers: [("Content-Type", "text/plain; charset=utf-8")] + headers,
      body: Array((message + "\n").utf8))
  }

  static func text(_ text: String, contentType: String = "text/plain; charset=utf-8") -> HTTPResponse {
    HTTPResponse(status: .ok, headers: [("Content-Type", contentType)], body: Array(text.utf8))
  }
}

/// A request that cannot be served as asked: its status and the message.
struct RequestError: Error, Sendable, Equatable {
  var status: HTTPResponseStatus
  var message: String

  static func badParameter(_ name: String, _ value: String, allowed: String) -> RequestError {
    RequestError(status: .badRequest, message: "invalid parameter \(name)='\(value)': allowed \(allowed)")
  }
}
