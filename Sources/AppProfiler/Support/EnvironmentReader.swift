/// An environment variable (or configuration key) whose value is invalid:
/// names the variable, the value and what is allowed. One type for every
/// setting the package reads (the server's `APP_PROFILER_*`, the exporters').
public struct EnvironmentError: Error, CustomStringConvertible, Sendable, Equatable {
  public var variable: String
  public var value: String
  public var allowed: String
  public var description: String { "invalid \(variable)='\(value)': allowed \(allowed)" }

  public init(variable: String, value: String, allowed: String) {
    self.variable = variable
    self.value = value
    self.allowed = allowed
  }
}

/// Reads settings from environment variables with one set of rules, so every
/// setting of the package parses alike: switches take `1/true/yes/on` and
/// `0/false/no/off` (empty is off), numbers a range, lists commas or spaces.
/// Each accessor is nil when the variable is unset.
@_spi(Configuration) public struct EnvironmentReader: Sendable {
  public let environment: [String: String]

  public init(_ environment: [String: String]) {
    self.environment = environment
  }

  /// The value as given (empty included).
  public func string(_ name: String) -> String? { environment[name] }

  /// The value when set and not empty.
  public func nonEmpty(_ name: String) -> String? {
    guard let value = environment[name], !value.isEmpty else { return nil }
    return value
  }

  public func bool(_ name: String) throws(EnvironmentError) -> Bool? {
    guard let value = environment[name] else { return nil }
    switch value.lowercased() {
    case "1", "true", "yes", "on": return true
    case "0", "false", "no", "off", "": return false
    default: throw EnvironmentError(variable: name, value: value, allowed: "1, true, 0 or false")
    }
  }

  /// An integer in `range`; `unit` (e.g. "seconds") is named in the error.
  public func int(_ name: String, _ range: ClosedRange<Int>, unit: String? = nil) throws(EnvironmentError) -> Int? {
    guard let value = environment[name] else { return nil }
    guard let number = Int(value), range.contains(number) else {
      let allowed =
        unit.map { "\(range.lowerBound) ... \(range.upperBound) \($0)" }
        ?? "an integer \(range.lowerBound) ... \(range.upperBound)"
      throw EnvironmentError(variable: name, value: value, allowed: allowed)
    }
    return number
  }

  /// One of `choices` by its name (case-insensitive).
  public func choice<T>(_ name: String, _ choices: KeyValuePairs<String, T>) throws(EnvironmentError) -> T? {
    guard let value = environment[name] else { return nil }
    guard let chosen = choices.first(where: { $0.key == value.lowercased() })?.value else {
      throw EnvironmentError(variable: name, value: value, allowed: choices.map(\.key).joined(separator: ", "))
    }
    return chosen
  }

  /// The items of a comma- or space-separated list.
  public static func items(_ text: String) -> [String] {
    text.split(whereSeparator: { $0 == "," || $0 == " " || $0 == "\t" }).map(String.init)
  }
}
