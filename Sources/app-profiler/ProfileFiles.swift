import AppProfiler
import Foundation

enum ProfileFiles {
  /// Reads any of our formats, recognised by content
  /// (``ProfileFormat/init(detecting:)``).
  static func read(_ path: String) throws(CLIError) -> Profile {
    guard let data = FileManager.default.contents(atPath: path) else { throw .failure("cannot read \(path)") }
    return try decode(Array(data), name: path)
  }

  static func decode(_ bytes: [UInt8], name: String) throws(CLIError) -> Profile {
    do {
      return try ProfileFormat(detecting: bytes).decode(bytes)
    } catch {
      throw .failure("\(name): \(error)")
    }
  }

  static func write(_ bytes: [UInt8], to path: String) throws(CLIError) {
    do {
      try Data(bytes).write(to: URL(fileURLWithPath: path))
    } catch {
      throw .failure("cannot write \(path): \(error.localizedDescription)")
    }
  }
}
