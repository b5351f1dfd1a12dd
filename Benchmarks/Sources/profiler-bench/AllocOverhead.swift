import AppProfiler

#if canImport(Glibc)
import Glibc
#endif

/// One object of the object-allocation loop: 16 bytes of header + 16.
final class BenchNode {
  var value: Int
  var next: BenchNode?
  init(_ value: Int) { self.value = value }
}

/// Opaque to the optimizer, so neither loop's allocation can be removed or
/// moved to the stack.
@_optimize(none) @inline(never) func benchKeep(_ node: BenchNode) -> Int { node.value }
@_optimize(none) @inline(never) func benchTouch(_ block: UnsafeMutableRawPointer, _ value: Int) -> Int {
  block.storeBytes(of: UInt8(truncatingIfNeeded: value), as: UInt8.self)
  return Int(block.load(as: UInt8.self))
}

/// malloc-heavy: malloc of 16 … 1 KiB then free, in a loop.
@inline(never) func mallocLoop(_ iterations: Int) -> Int {
  var total = 0
  for index in 0..<iterations {
    let size = 16 + (index & 63) * 16
    let block = malloc(size)!
    total &+= benchTouch(block, index)
    free(block)
  }
  return total
}

/// object-heavy: one class instance per iteration, released at once.
@inline(never) func objectLoop(_ iterations: Int) -> Int {
  var total = 0
  for index in 0..<iterations {
    total &+= benchKeep(BenchNode(index))
  }
  return total
}

/// Operations per second of `body` run in batches for `seconds`.
func throughput(seconds: Double, _ body: (Int) -> Int) -> Double {
  let batch = 100_000
  var operations = 0
  var checksum = 0
  let start = ContinuousClock.now
  let limit = Duration.milliseconds(Int64(seconds * 1000))
  while ContinuousClock.now - start < limit {
    checksum &+= body(batch)
    operations += batch
  }
  let elapsed = ContinuousClock.now - start
  sink.wrappingAdd(UInt64(truncatingIfNeeded: checksum), ordering: .relaxed)
  return Double(operations) / (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
}

/// One process = one variant; run.sh interleaves processes.
///   never:  the library is linked, no allocation sampling ever ran
///   after:  an alloc session ran and ended (wrappers removed)
///   during: an alloc session at 512 KiB runs while measuring
///   always: continuous allocation sampling at 512 KiB
func benchAllocOverhead(variant: String, seconds: Double, rate: Int = 524_288) async throws {
  var options = SessionOptions()
  options.allocationSamplingRate = rate
  var session: ProfilingSession? = nil
  switch variant {
  case "never":
    break
  case "after":
    let warm = try Profiler.shared.start(mode: .alloc, options: options)
    _ = mallocLoop(100_000) &+ objectLoop(100_000)
    _ = try await warm.stop()
  case "during":
    session = try Profiler.shared.start(mode: .alloc, options: options)
  case "always":
    try Profiler.shared.enableContinuousAllocationSampling(rate: rate, options: options)
  default:
    print("unknown variant \(variant)")
    return
  }
  let mallocRate = throughput(seconds: seconds, mallocLoop)
  let objectRate = throughput(seconds: seconds, objectLoop)
  var samples: Int64 = 0
  if let session {
    let profile = try await session.stop()
    samples = profile.totalCount
  } else if variant == "always", let profile = Profiler.shared.cumulativeAllocationProfile() {
    samples = profile.totalCount
  }
  print("alloc-overhead \(variant) malloc_ops_per_s=\(Int(mallocRate)) object_ops_per_s=\(Int(objectRate)) samples=\(samples)")
}
