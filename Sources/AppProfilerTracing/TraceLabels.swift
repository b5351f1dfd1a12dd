// Shared by the Hummingbird and Vapor integrations: the `trace_id` and
// `span_id` labels of a request, from the span swift-distributed-tracing has
// made current for it. Empty without either trait.
#if Hummingbird || Vapor
import Instrumentation
import ServiceContextModule

/// Reads the current span's ids the way the tracer propagates them: the
/// tracer injects the context into a dictionary, as it would into outgoing
/// request headers, and the ids are read back from W3C `traceparent`
/// (OpenTelemetry tracers such as swift-otel), B3 (`b3`, `X-B3-TraceId` /
/// `X-B3-SpanId`), or swift-distributed-tracing's in-memory tracer. No
/// tracer, no span, or a format not among these: no labels.
package enum TraceLabels {
  package static func labels(for context: ServiceContext, instrument: any Instrument) -> [String: String] {
    var carrier: [String: String] = [:]
    instrument.inject(context, into: &carrier, using: LowercasedKeys())
    if let parent = carrier["traceparent"] {
      // version-traceid(32 hex)-spanid(16 hex)-flags
      let parts = parent.split(separator: "-")
      if parts.count >= 4, isID(parts[1], 32), isID(parts[2], 16) {
        return ["trace_id": String(parts[1]), "span_id": String(parts[2])]
      }
    }
    if let single = carrier["b3"] {
      let parts = single.split(separator: "-")
      if parts.count >= 2, isID(parts[0], 16) || isID(parts[0], 32), isID(parts[1], 16) {
        return ["trace_id": String(parts[0]), "span_id": String(parts[1])]
      }
    }
    for (trace, span) in [("x-b3-traceid", "x-b3-spanid"), ("in-memory-trace-id", "in-memory-span-id")] {
      if let traceID = carrier[trace], let spanID = carrier[span], !traceID.isEmpty, !spanID.isEmpty {
        return ["trace_id": traceID, "span_id": spanID]
      }
    }
    return [:]
  }

  /// `length` hex digits, not all zero (W3C's invalid id).
  private static func isID(_ text: Substring, _ length: Int) -> Bool {
    text.count == length && text.allSatisfy(\.isHexDigit) && text.contains { $0 != "0" }
  }

  private struct LowercasedKeys: Injector {
    func inject(_ value: String, forKey key: String, into carrier: inout [String: String]) {
      carrier[key.lowercased()] = value
    }
  }
}
#endif
