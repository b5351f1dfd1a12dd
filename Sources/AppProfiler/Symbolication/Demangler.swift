#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

// The Swift runtime's demangler, exported by libswiftCore on every platform.
@_silgen_name("swift_demangle")
private func _swiftDemangle(
  _ mangledName: UnsafePointer<CChar>?, _ mangledNameLength: UInt,
  _ outputBuffer: UnsafeMutablePointer<CChar>?, _ outputBufferSize: UnsafeMutablePointer<UInt>?,
  _ flags: UInt32
) -> UnsafeMutablePointer<CChar>?

/// Turns symbol names into readable ones, in-process.
enum Demangler {
  /// Demangled Swift names (`$s…`, `_$s…`, `$S…`, `_T0…`); other names as given.
  static func demangle(_ symbol: String) -> String {
    guard isSwiftSymbol(symbol) else { return symbol }
    return symbol.withCString { pointer -> String in
      guard let result = _swiftDemangle(pointer, UInt(strlen(pointer)), nil, nil, 0) else {
        return symbol
      }
      defer { free(result) }
      return String(cString: result)
    }
  }

  static func isSwiftSymbol(_ symbol: String) -> Bool {
    symbol.hasPrefix("$s") || symbol.hasPrefix("_$s") || symbol.hasPrefix("$S")
      || symbol.hasPrefix("_$S") || symbol.hasPrefix("_T0") || symbol.hasPrefix("$e")
  }
}
