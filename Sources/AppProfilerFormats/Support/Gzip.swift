import CZlib

/// gzip compression through the system's zlib (pprof files are gzipped
/// protobuf; `go tool pprof`, Pyroscope and Parca expect that).
public enum Gzip {
  public struct Failure: Error, CustomStringConvertible, Sendable {
    public var description: String
  }

  /// True when `bytes` start with the gzip magic (1f 8b).
  public static func isCompressed(_ bytes: [UInt8]) -> Bool {
    bytes.count >= 2 && bytes[0] == 0x1F && bytes[1] == 0x8B
  }

  public static func compress(_ input: [UInt8], level: Int32 = 6) -> [UInt8] {
    var stream = z_stream()
    // windowBits 15 + 16: write a gzip header and trailer.
    guard deflateInit2_(&stream, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY, zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK
    else { fatalError("zlib deflateInit2 failed") }
    defer { deflateEnd(&stream) }
    var output = [UInt8](repeating: 0, count: Int(deflateBound(&stream, uLong(input.count))) + 32)
    var input = input
    let written = input.withUnsafeMutableBufferPointer { inputBuffer -> Int in
      output.withUnsafeMutableBufferPointer { outputBuffer -> Int in
        stream.next_in = inputBuffer.baseAddress
        stream.avail_in = uInt(inputBuffer.count)
        stream.next_out = outputBuffer.baseAddress
        stream.avail_out = uInt(outputBuffer.count)
        let result = deflate(&stream, Z_FINISH)
        precondition(result == Z_STREAM_END, "zlib deflate did not finish: \(result)")
        return outputBuffer.count - Int(stream.avail_out)
      }
    }
    output.removeLast(output.count - written)
    return output
  }

  /// Inflates zlib (or gzip) data straight into `output`, which it must fill
  /// exactly (the size is known beforehand, as for ELF compressed sections).
  /// False when the data is invalid or of another size, or a buffer is
  /// larger than zlib's 32-bit counts.
  public static func decompress(_ input: UnsafeRawBufferPointer, exactlyInto output: UnsafeMutableRawBufferPointer) -> Bool {
    guard let inputBase = input.baseAddress, let outputBase = output.baseAddress,
      input.count <= Int(UInt32.max), output.count <= Int(UInt32.max)
    else { return false }
    var stream = z_stream()
    // windowBits 15 + 32: detect gzip or zlib headers.
    guard inflateInit2_(&stream, 15 + 32, zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK else { return false }
    defer { inflateEnd(&stream) }
    stream.next_in = UnsafeMutablePointer(mutating: inputBase.assumingMemoryBound(to: UInt8.self))
    stream.avail_in = uInt(input.count)
    stream.next_out = outputBase.assumingMemoryBound(to: UInt8.self)
    stream.avail_out = uInt(output.count)
    return inflate(&stream, Z_FINISH) == Z_STREAM_END && stream.avail_out == 0
  }

  /// Decompresses gzip (or zlib) data; at most `limit` bytes of output.
  public static func decompress(_ input: [UInt8], limit: Int = 1 << 30) throws(Failure) -> [UInt8] {
    var stream = z_stream()
    // windowBits 15 + 32: detect gzip or zlib headers.
    guard inflateInit2_(&stream, 15 + 32, zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
      throw Failure(description: "zlib inflateInit2 failed")
    }
    defer { inflateEnd(&stream) }
    var output: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    var input = input
    var status: Int32 = Z_OK
    input.withUnsafeMutableBufferPointer { inputBuffer in
      stream.next_in = inputBuffer.baseAddress
      stream.avail_in = uInt(inputBuffer.count)
      repeat {
        chunk.withUnsafeMutableBufferPointer { chunkBuffer in
          stream.next_out = chunkBuffer.baseAddress
          stream.avail_out = uInt(chunkBuffer.count)
          status = inflate(&stream, Z_NO_FLUSH)
          output.append(contentsOf: chunkBuffer[0..<(chunkBuffer.count - Int(stream.avail_out))])
        }
      } while status == Z_OK && output.count <= limit && (stream.avail_in > 0 || stream.avail_out == 0)
    }
    guard status == Z_STREAM_END else {
      throw Failure(description: output.count > limit ? "decompressed data larger than \(limit) bytes" : "invalid or truncated gzip data (zlib status \(status))")
    }
    return output
  }
}
