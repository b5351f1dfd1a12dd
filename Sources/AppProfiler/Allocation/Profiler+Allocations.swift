import CAppProfiler

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

extension Profiler {
  // MARK: Continuous allocation sampling

  /// Samples allocations from now on, for the life of the process (or until
  /// ``disableContinuousAllocationSampling()``), at `rate` mean bytes between
  /// samples; ``cumulativeAllocationProfile()`` returns the totals, like Go's
  /// `/debug/pprof/allocs`. Off by default. While it runs, an alloc session
  /// is the difference of two totals at this rate (its own rate is ignored).
  /// Cost: every allocation passes through a wrapper (a few ns); see
  /// BENCHMARKS.md.
  public func enableContinuousAllocationSampling(rate: Int = 524_288, options: SessionOptions = SessionOptions()) throws {
    guard Self.isSupported else { throw ProfilerError.unsupportedPlatform }
    guard SessionOptions.allowedAllocationSamplingRates.contains(rate) else {
      throw ProfilerError.invalidParameter(name: "rate", value: "\(rate)", allowed: "1 ... 1073741824 bytes")
    }
    try AllocationRecorder.shared.enableContinuous(rate: rate, options: options)
  }

  /// Stops continuous allocation sampling and drops its totals.
  public func disableContinuousAllocationSampling() {
    AllocationRecorder.shared.disableContinuous()
  }

  /// The continuous mode's rate in bytes, nil when it is off.
  public var continuousAllocationSamplingRate: Int? { AllocationRecorder.shared.continuousRate }

  /// Allocations since continuous sampling was enabled (estimated objects
  /// and bytes per stack, all threads together); nil when it is off.
  public func cumulativeAllocationProfile() -> Profile? {
    guard let recording = AllocationRecorder.shared.continuousSnapshot() else { return nil }
    let now = ProfilingSession.clock(CLOCK_MONOTONIC)
    return ProfilingSession.allocationProfile(
      recording, durationNanoseconds: now > recording.startMonotonicNanoseconds ? now - recording.startMonotonicNanoseconds : 0)
  }

  /// What is alive now among the allocations sampled since continuous
  /// sampling was enabled, with their totals: Go's heap profile
  /// (alloc_objects, alloc_space, inuse_objects, inuse_space; estimates, as
  /// Go's, unbiased by each sample's probability). nil when continuous
  /// sampling is off. docs/heap.md says what is counted.
  public func heapProfile() -> Profile? {
    guard let recording = AllocationRecorder.shared.continuousSnapshot() else { return nil }
    let now = ProfilingSession.clock(CLOCK_MONOTONIC)
    return ProfilingSession.allocationProfile(
      recording, durationNanoseconds: now > recording.startMonotonicNanoseconds ? now - recording.startMonotonicNanoseconds : 0,
      mode: .heap)
  }
}
