import AppProfiler
import ArgumentParser
import Foundation
import Synchronization

/// A progress bar on a terminal, one plain line otherwise.
final class Progress {
  private let label: String
  private let seconds: Double
  private let start = Date()
  private let isTerminal = isatty(STDERR_FILENO) == 1
  private var printed = false

  init(label: String, seconds: Double) {
    self.label = label
    self.seconds = seconds
    fflush(nil)  // what was printed before comes first
    if !isTerminal {
      FileHandle.standardError.write(Data("\(label) for \(seconds) s…\n".utf8))
      printed = true
    }
  }

  func update() {
    guard isTerminal else { return }
    let elapsed = Date().timeIntervalSince(start)
    let fraction = min(elapsed / max(seconds, 0.001), 1)
    let width = 30
    let filled = Int(fraction * Double(width))
    let left = max(0, seconds - elapsed)
    let status = left > 0 ? String(format: "%.1f s left", left) : "symbolizing…"
    let bar = String(repeating: "█", count: filled) + String(repeating: "░", count: width - filled)
    FileHandle.standardError.write(Data("\r\(label) \(bar) \(status)   ".utf8))
  }

  func finish() {
    if isTerminal { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
  }
}
