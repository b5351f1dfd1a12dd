import CAppProfiler

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

extension Profiler {
  // MARK: Continuous lock sampling

  /// Measures contended pthread lock acquisitions from now on, for the life
  /// of the process (or until ``disableContinuousLockSampling()``):
  /// ``cumulativeLockProfile(_:)`` returns the totals, like Go's
  /// `/debug/pprof/block` and `/mutex` after `SetBlockProfileRate`. Off by
  /// default. While it runs, block and mutex sessions read it at its rate.
  /// Cost: docs/locks.md.
  public func enableContinuousLockSampling(
    rate: Duration = .microseconds(100), options: SessionOptions = SessionOptions()
  ) throws {
    guard Self.isSupported else { throw ProfilerError.unsupportedPlatform }
    guard SessionOptions.allowedLockSamplingRates.contains(rate) else {
      throw ProfilerError.invalidParameter(name: "rate", value: "\(rate)", allowed: "1 ns ... 1 s")
    }
    try LockRecorder.shared.enableContinuous(rate: rate, options: options)
  }

  /// Stops continuous lock sampling and drops its totals.
  public func disableContinuousLockSampling() {
    LockRecorder.shared.disableContinuous()
  }

  /// The continuous mode's rate, nil when it is off.
  public var continuousLockSamplingRate: Duration? { LockRecorder.shared.continuousRate }

  /// Lock waits since continuous sampling was enabled, all threads
  /// together: by the waiters' stacks (`.block`) or by the holders' at the
  /// unlock that ended them (`.mutex`). nil when it is off or `mode` is
  /// not a lock mode.
  public func cumulativeLockProfile(_ mode: Profile.Mode) -> Profile? {
    guard let kind = LockRecorder.Kind(mode), let recording = LockRecorder.shared.continuousSnapshot(kind) else {
      return nil
    }
    var collector = recording.collector
    let now = ProfilingSession.clock(CLOCK_MONOTONIC)
    let builder = ProfileBuilder(
      mode: mode, startTimeNanoseconds: recording.startTimeNanoseconds,
      startMonotonicNanoseconds: recording.startMonotonicNanoseconds,
      durationNanoseconds: now > recording.startMonotonicNanoseconds ? now - recording.startMonotonicNanoseconds : 0,
      report: LockBackend.report(recording))
    return builder.build(from: &collector)
  }
}
