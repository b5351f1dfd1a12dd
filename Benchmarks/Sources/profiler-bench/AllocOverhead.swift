import AppProfiler
import Foundation

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

/// malloc-heavy: malloc of 16 … 1 KiB, replacing one of 64 blocks kept
/// (one free per iteration; see objectLoop for why not free at once).
@inline(never) func mallocLoop(_ iterations: Int) -> Int {
  var total = 0
  var ring = [UnsafeMutableRawPointer?](repeating: nil, count: 64)
  for index in 0..<iterations {
    let size = 16 + (index & 63) * 16
    let block = malloc(size)!
    total &+= benchTouch(block, index)
    let slot = (index &* 7) & 63
    free(ring[slot])
    ring[slot] = block
  }
  for block in ring { free(block) }
  return total
}

/// object-heavy: one class instance per iteration, replacing one of 64 kept
/// alive (so one is freed per iteration too). Not the same object released
/// at once: that reuses one address forever, and whether that address
/// 4K-aliases the stack (decided by ASLR per process) made the same loop run
/// at 38 M or 22 M objects/s from one process to the next.
@inline(never) func objectLoop(_ iterations: Int) -> Int {
  var total = 0
  var ring: [BenchNode?] = Array(repeating: nil, count: 64)
  for index in 0..<iterations {
    let node = BenchNode(index)
    total &+= benchKeep(node)
    ring[index & 63] = node
  }
  return total &+ ring.count
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
  case "touched":
    // An alloc session started and stopped at once: no samples to speak
    // of, nothing to symbolize; what installing and removing leaves behind.
    var quiet = options
    quiet.allocationSamplingRate = 1 << 30
    _ = try await Profiler.shared.start(mode: .alloc, options: quiet).stop()
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
    samples = profile.statistics.samplesRecorded
  } else if variant == "always", let profile = Profiler.shared.cumulativeAllocationProfile() {
    samples = profile.statistics.samplesRecorded
  }
  print("alloc-overhead \(variant) malloc_ops_per_s=\(Int(mallocRate)) object_ops_per_s=\(Int(objectRate)) samples=\(samples)")
}

/// The same loops A/B in one process: `never` first (nothing installed yet),
/// then rounds of always-on (continuous sampling with in-use tracking),
/// off (after it was disabled), during (an alloc session), off again; each
/// phase 0.5 s per loop. One process, one thread, one stack: the per-process
/// layout effects that make separate processes differ (see objectLoop) are
/// the same for every phase. Prints each phase's median and its ratio to
/// the median of the off phases and to never.
func benchAllocInterleaved(rounds: Int, rate: Int = 524_288) async throws {
  var options = SessionOptions()
  options.allocationSamplingRate = rate
  var results: [String: [(Double, Double)]] = [:]
  func measure(_ phase: String) {
    let malloc = throughput(seconds: 0.5, mallocLoop)
    let object = throughput(seconds: 0.5, objectLoop)
    results[phase, default: []].append((malloc, object))
  }
  _ = mallocLoop(100_000) &+ objectLoop(100_000)
  measure("never")
  if ProcessInfo.processInfo.environment["ALLOC_AB_CHURN"] == "1" {
    // Without any profiler: 100,000 blocks of 16 B … 62 KiB allocated and
    // freed, then the loops again (how a used heap runs them).
    var blocks: [UnsafeMutableRawPointer] = []
    for index in 0..<100_000 { blocks.append(malloc(16 + (index % 977) * 64)!) }
    for block in blocks { free(block) }
    let malloc = throughput(seconds: 0.5, mallocLoop)
    let object = throughput(seconds: 0.5, objectLoop)
    print("alloc-ab churn-only: malloc \(Int(malloc)) (\(String(format: "%.3f", malloc / results["never"]![0].0))x never), objects \(Int(object)) (\(String(format: "%.3f", object / results["never"]![0].1))x never)")
  }
  for _ in 0..<rounds {
    try Profiler.shared.enableContinuousAllocationSampling(rate: rate, options: options)
    measure("always")
    _ = Profiler.shared.heapProfile()
    Profiler.shared.disableContinuousAllocationSampling()
    measure("after")
    let session = try Profiler.shared.start(mode: .alloc, options: options)
    measure("during")
    _ = try await session.stop()
    measure("after")
  }
  func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
  }
  let off = results["after"]!
  let offMalloc = median(off.map(\.0)), offObject = median(off.map(\.1))
  let never = results["never"]!.first!
  for phase in ["never", "after", "during", "always"] {
    let list = results[phase]!
    let m = median(list.map(\.0)), o = median(list.map(\.1))
    print(
      "alloc-ab phase=\(phase) phases=\(list.count) malloc_ops_median=\(Int(m)) malloc_vs_after=\(String(format: "%.3f", m / offMalloc)) "
        + "malloc_vs_never=\(String(format: "%.3f", m / never.0)) object_ops_median=\(Int(o)) object_vs_after=\(String(format: "%.3f", o / offObject)) "
        + "object_vs_never=\(String(format: "%.3f", o / never.1))")
  }
}
