import AppProfilerFormats
import CAppProfiler

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The bounds of a session's parameters, checked before anything starts.
extension Profiler {
  static func validate(duration: Duration) throws {
    guard duration > .zero, duration <= .seconds(86_400) else {
      throw ProfilerError.invalidParameter(name: "duration", value: "\(duration)", allowed: "0 s < duration ≤ 86400 s")
    }
  }

  static func validate(mode: Profile.Mode, interval: Duration, options: SessionOptions) throws {
    guard SessionOptions.allowedAllocationSamplingRates.contains(options.allocationSamplingRate) else {
      throw ProfilerError.invalidParameter(
        name: "allocationSamplingRate", value: "\(options.allocationSamplingRate)", allowed: "1 ... 1073741824 bytes")
    }
    guard SessionOptions.allowedLockSamplingRates.contains(options.lockSamplingRate) || !mode.isLock else {
      throw ProfilerError.invalidParameter(
        name: "lockSamplingRate", value: "\(options.lockSamplingRate)", allowed: "1 ns ... 1 s")
    }
    guard mode.isEvent || SessionOptions.allowedIntervals.contains(interval) else {
      let micros = SessionOptions.intervalParameterRange(for: .cpu).range
      throw ProfilerError.invalidParameter(
        name: "interval", value: "\(interval)",
        allowed:
          "\(micros.lowerBound) µs ... \(micros.upperBound / 1_000_000) s (\(micros.lowerBound) ... \(micros.upperBound) µs)")
    }
    guard options.signal > 0, options.signal < 65, options.signal != SIGKILL, options.signal != SIGSTOP else {
      throw ProfilerError.invalidParameter(name: "signal", value: "\(options.signal)", allowed: "1 ... 64 except SIGKILL and SIGSTOP")
    }
    let slots = SessionOptions.allowedBufferSlots
    guard slots.contains(options.bufferSlots) else {
      throw ProfilerError.invalidParameter(
        name: "bufferSlots", value: "\(options.bufferSlots)", allowed: "\(slots.lowerBound) ... \(slots.upperBound)")
    }
    let threads = SessionOptions.allowedMaxThreads
    guard threads.contains(options.maxThreads) else {
      throw ProfilerError.invalidParameter(
        name: "maxThreads", value: "\(options.maxThreads)", allowed: "\(threads.lowerBound) ... \(threads.upperBound)")
    }
  }
}
