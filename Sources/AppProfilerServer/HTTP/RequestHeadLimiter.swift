import NIOCore

/// Sits before the HTTP decoder and checks the raw request head, so each
/// limit gets its own answer instead of the decoder's one "header overflow"
/// (which also came as a reset for a long request line):
///
/// | limit | answer |
/// |---|---|
/// | request line over ``maxRequestLine`` bytes | 414 |
/// | more than ``maxHeaderFields`` header lines | 431, "too many header fields" |
/// | head over ``maxHeadBytes`` bytes | 431, "request headers larger than …" |
///
/// Past the limit it forwards nothing more: the handler answers, and the
/// connection lingers half-closed until the client has read the answer.
final class RequestHeadLimiter: ChannelInboundHandler, RemovableChannelHandler {
  typealias InboundIn = ByteBuffer
  typealias InboundOut = ByteBuffer

  /// Which limit a request broke; `ProfileServerHandler` turns it into the answer.
  enum Violation: Error, Equatable {
    case requestLineTooLong(limit: Int)
    case tooManyHeaderFields(limit: Int)
    case headTooLarge(limit: Int)
  }

  let maxRequestLine: Int
  let maxHeaderFields: Int
  let maxHeadBytes: Int

  private var headBytes = 0
  private var lineLength = 0
  private var lines = 0
  private var headComplete = false
  private var tripped = false

  init(maxRequestLine: Int, maxHeaderFields: Int, maxHeadBytes: Int) {
    self.maxRequestLine = maxRequestLine
    self.maxHeaderFields = maxHeaderFields
    self.maxHeadBytes = maxHeadBytes
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    guard !tripped else { return }
    guard !headComplete else {
      context.fireChannelRead(data)
      return
    }
    let buffer = unwrapInboundIn(data)
    if let violation = scan(buffer.readableBytesView) {
      tripped = true
      context.fireErrorCaught(violation)
      return
    }
    context.fireChannelRead(data)
  }

  /// Counts lines up to the blank line that ends the head (CR is not counted
  /// in a line's length).
  private func scan(_ bytes: ByteBufferView) -> Violation? {
    for byte in bytes {
      if headComplete { return nil }
      headBytes += 1
      if byte == UInt8(ascii: "\n") {
        if lineLength == 0 && lines > 0 {
          headComplete = true
        } else {
          lines += 1
          if lines - 1 > maxHeaderFields { return .tooManyHeaderFields(limit: maxHeaderFields) }
        }
        lineLength = 0
      } else if byte != UInt8(ascii: "\r") {
        lineLength += 1
        if lines == 0 && lineLength > maxRequestLine { return .requestLineTooLong(limit: maxRequestLine) }
      }
      if headBytes > maxHeadBytes { return .headTooLarge(limit: maxHeadBytes) }
    }
    return nil
  }
}
