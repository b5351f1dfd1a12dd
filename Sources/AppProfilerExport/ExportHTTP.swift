// With the Pyroscope or OTLP trait (the exporters that push over HTTP).
#if Pyroscope || OTLP
import AppProfiler
import AsyncHTTPClient
import NIOCore
import NIOHTTP1

/// One POST of an exporter, its answer as a push outcome.
public enum ExportHTTP {
  public static func post(
    url: String, headers: [(String, String)], body: [UInt8], timeout: Duration, client: HTTPClient
  ) -> ProfilePusher.Outcome {
    do {
      var request = try HTTPClient.Request(url: url, method: .POST)
      request.headers.add(name: "User-Agent", value: "swift-app-profiler/\(AppProfilerVersion.current)")
      for (name, value) in headers { request.headers.add(name: name, value: value) }
      request.body = .bytes(body)
      let deadline = TimeAmount.nanoseconds(
        Int64(timeout.components.seconds) * 1_000_000_000 + timeout.components.attoseconds / 1_000_000_000)
      let response = try client.execute(request: request, deadline: .now() + deadline).wait()
      let status = Int(response.status.code)
      switch status {
      case 200..<300: return .uploaded
      case 429, 500...: return .retry("HTTP \(status)")
      default:
        let text = response.body.map { String(buffer: $0) } ?? ""
        return .rejected("HTTP \(status) \(text.prefix(200))")
      }
    } catch {
      return .retry("\(error)")
    }
  }
}
#endif
