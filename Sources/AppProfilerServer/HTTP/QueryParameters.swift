import AppProfiler

/// The one parser of a route's query parameters. A route names the
/// parameters it takes, and those it accepts and ignores (Go's `gc` and
/// `debug`, which scrapers send); any other name, and any name given twice,
/// is refused. Each accessor validates one value. Every route's errors read
/// alike:
///
/// - `unknown parameter 'x': allowed a, b`
/// - `parameter 'x' given more than once`
/// - `invalid parameter x='v': allowed …`
struct QueryParameters: Sendable {
  private var values: [String: String] = [:]

  init(_ query: HTTPQuery, allowed: [String], ignoring ignored: Set<String> = []) throws(RequestError) {
    for (name, value) in query.parameters {
      if ignored.contains(name) { continue }
      guard allowed.contains(name) else {
        let names = (allowed + ignored.sorted()).joined(separator: ", ")
        throw RequestError(status: .badRequest, message: "unknown parameter '\(name)': allowed \(names)")
      }
      guard values.updateValue(value, forKey: name) == nil else {
        throw RequestError(status: .badRequest, message: "parameter '\(name)' given more than once")
      }
    }
  }

  /// The value given for `name`, as sent (decoded).
  func string(_ name: String) -> String? { values[name] }

  /// One of `choices`, by its name.
  func choice<T>(_ name: String, _ choices: KeyValuePairs<String, T>) throws(RequestError) -> T? {
    guard let value = values[name] else { return nil }
    guard let chosen = choices.first(where: { $0.key == value })?.value else {
      throw .badParameter(name, value, allowed: choices.map(\.key).joined(separator: ", "))
    }
    return chosen
  }

  /// `0` or `1`.
  func flag(_ name: String) throws(RequestError) -> Bool? {
    try choice(name, ["0": false, "1": true])
  }

  /// A whole number in `range`; `allowed` describes it in the error (by
  /// default the range).
  func integer(_ name: String, in range: ClosedRange<Int>, allowed: String? = nil) throws(RequestError) -> Int? {
    guard let value = values[name] else { return nil }
    guard let number = Int(value), range.contains(number) else {
      throw .badParameter(name, value, allowed: allowed ?? "\(range.lowerBound) ... \(range.upperBound)")
    }
    return number
  }

  /// Decimal seconds, 0 < seconds ≤ `max` (and the library's 24 h);
  /// `allowed` describes them in the error, `\(max)` filled in.
  func seconds(_ name: String, max: Duration, allowed: (String) -> String) throws(RequestError) -> Duration? {
    guard let value = values[name] else { return nil }
    let maxSeconds = min(86_400, Double(max.components.seconds) + Double(max.components.attoseconds) / 1e18)
    guard let seconds = Double(value), seconds.isFinite, seconds > 0, seconds <= maxSeconds,
      value.allSatisfy({ $0.isNumber || $0 == "." })
    else {
      throw .badParameter(name, value, allowed: allowed(Self.formatSeconds(maxSeconds)))
    }
    return .nanoseconds(Int64((seconds * 1e9).rounded()))
  }

  /// A duration of 0 or more: seconds (`30`), or with a unit (`30s`, `1.5s`,
  /// `250ms`, `2m`, `1h`), up to a year.
  func duration(_ name: String) throws(RequestError) -> Duration? {
    guard let value = values[name] else { return nil }
    guard let duration = Self.parseDuration(value) else {
      throw .badParameter(name, value, allowed: "seconds ≥ 0 (30, 30s, 2m, 1h)")
    }
    return duration
  }

  /// `30`, `30s`, `1.5s`, `250ms`, `2m`, `1h` → a duration; nil when not one.
  static func parseDuration(_ text: String) -> Duration? {
    let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)]
    var number = Substring(text)
    var scale = 1.0
    for (suffix, factor) in units where text.hasSuffix(suffix) {
      number = text.dropLast(suffix.count)
      scale = factor
      break
    }
    guard let value = Double(number), value.isFinite, value >= 0, value * scale <= 365 * 86400 else { return nil }
    return .milliseconds(Int64((value * scale * 1000).rounded()))
  }

  static func formatSeconds(_ seconds: Double) -> String {
    seconds == seconds.rounded() ? String(Int(seconds)) : String(seconds)
  }
}
