#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// The Swift runtime's demangler, exported by libswiftCore on every platform.
@_silgen_name("swift_demangle")
private func _swiftDemangle(
  _ mangledName: UnsafePointer<CChar>?, _ mangledNameLength: UInt,
  _ outputBuffer: UnsafeMutablePointer<CChar>?, _ outputBufferSize: UnsafeMutablePointer<UInt>?,
  _ flags: UInt32
) -> UnsafeMutablePointer<CChar>?

/// The C++ ABI's demangler, looked up at run time in libstdc++ (which the
/// Swift runtime loads), so linking does not depend on it; nil if absent.
private typealias CxaDemangle = @convention(c) (
  UnsafePointer<CChar>?, UnsafeMutablePointer<CChar>?, UnsafeMutablePointer<Int>?, UnsafeMutablePointer<Int32>?
) -> UnsafeMutablePointer<CChar>?

private let cxaDemangle: CxaDemangle? = {
  guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "__cxa_demangle") else { return nil }
  return unsafeBitCast(symbol, to: CxaDemangle.self)
}()

/// Turns symbol names into readable ones, in-process.
enum Demangler {
  /// Demangled Swift names (`$s…`, `_$s…`, `$S…`, `_T0…`) and C++ names
  /// (`_Z…`, e.g. the Swift runtime's own); other names as given.
  static func demangle(_ symbol: String) -> String {
    // A PLT stub (ELFSymbolTable): the function it jumps to, marked.
    if symbol.hasSuffix("@plt") { return demangle(String(symbol.dropLast(4))) + "@plt" }
    if symbol.hasPrefix("_Z") { return demangleCxx(symbol) }
    guard isSwiftSymbol(symbol) else { return symbol }
    return symbol.withCString { pointer -> String in
      guard let result = _swiftDemangle(pointer, UInt(strlen(pointer)), nil, nil, 0) else {
        return symbol
      }
      defer { free(result) }
      return asyncFunctionName(String(cString: result))
    }
  }

  /// An async function's partial functions ("(2) await resume partial
  /// function for f() async", "(1) suspend resume partial function for …")
  /// are named as the function itself: to a reader they are `f` resuming
  /// after an `await` (the mangled name, the frame's system name, keeps
  /// which part it is).
  static func asyncFunctionName(_ name: String) -> String {
    guard name.first == "(", let close = name.firstIndex(of: ")") else { return name }
    let digits = name[name.index(after: name.startIndex)..<close]
    guard !digits.isEmpty, digits.allSatisfy(\.isNumber) else { return name }
    let rest = name[name.index(after: close)...]
    for marker in [" await resume partial function for ", " suspend resume partial function for "]
    where rest.hasPrefix(marker) {
      return String(rest.dropFirst(marker.count))
    }
    return name
  }

  static func demangleCxx(_ symbol: String) -> String {
    symbol.withCString { pointer -> String in
      var status: Int32 = 0
      guard let demangle = cxaDemangle, let result = demangle(pointer, nil, nil, &status), status == 0 else {
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
