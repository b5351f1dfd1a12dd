/// The route table: one list feeds routing, the index page and the README.
struct Route: Sendable {
  enum Endpoint: Sendable {
    case index
    case profile
    case threads
  }

  var path: String
  var endpoint: Endpoint
  var summary: String
  var example: String
}

enum Routes {
  static let all: [Route] = [
    Route(
      path: "/", endpoint: .index, summary: "this page: status and links",
      example: "/"),
    Route(
      path: "/profile", endpoint: .profile,
      summary: "record a profile of the whole process and return it (speedscope JSON); parameters mode=cpu|wall, duration=<seconds>, interval=<µs>, format=speedscope",
      example: "/profile?mode=cpu&duration=10"),
    Route(
      path: "/threads", endpoint: .threads,
      summary: "every thread's stack right now (text; format=json for JSON)",
      example: "/threads"),
  ]

  static func match(_ path: String) -> Route? {
    all.first { $0.path == path }
  }
}
