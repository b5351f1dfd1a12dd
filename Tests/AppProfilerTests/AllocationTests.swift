import AppProfiler
import CAppProfiler
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// 16 bytes of object header + 4 × 8 bytes of fields = 48 bytes per instance.
final class Payload {
  var a = 0, b = 0, c = 0, d = 0
}

/// The 8-thread test's type: 16 + 6 × 8 = 64 bytes.
final class ThreadPayload {
  var a = 0, b = 0, c = 0, d = 0, e = 0, f = 0
}

/// Keeps the optimizer from removing an allocation (thread-safe: no shared state).
@_optimize(none) @inline(never) func consume(_ object: AnyObject) {}
@_optimize(none) @inline(never) func consume(_ value: Int) {}

@inline(never) func makePayloads(_ count: Int) {
  for index in 0..<count {
    let payload = Payload()
    payload.a = index
    consume(payload)
  }
}

@inline(never) func makeBuffers(_ count: Int) {
  for index in 0..<count {
    var buffer = [UInt8](repeating: 0, count: 1024)
    buffer[index & 1023] = 1
    consume(Int(buffer[0]))
  }
}

@inline(never) func makeThreadPayloads(_ count: Int) {
  for index in 0..<count {
    let payload = ThreadPayload()
    payload.a = index
    consume(payload)
  }
}

/// Runs `body` on `count` threads at once and waits for them.
func onThreads(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
  final class Box: @unchecked Sendable {
    let body: @Sendable (Int) -> Void
    let index: Int
    init(_ body: @escaping @Sendable (Int) -> Void, _ index: Int) {
      self.body = body
      self.index = index
    }
  }
  var threads: [pthread_t] = []
  for index in 0..<count {
    var thread = pthread_t()
    let box = Unmanaged.passRetained(Box(body, index)).toOpaque()
    pthread_create(&thread, nil, { argument in
      let box = Unmanaged<Box>.fromOpaque(argument!).takeRetainedValue()
      box.body(box.index)
      return nil
    }, box)
    threads.append(thread)
  }
  for thread in threads { pthread_join(thread, nil) }
}

extension Profile {
  /// Estimated objects and bytes of samples whose stack holds a function
  /// whose name contains `fragment`.
  func allocations(containing fragment: String) -> (objects: Int64, bytes: Int64, raw: Int64) {
    var totals: (Int64, Int64, Int64) = (0, 0, 0)
    for thread in threads {
      for sample in thread.samples where names(ofStack: sample.stack).contains(where: { $0.contains(fragment) }) {
        totals.0 += count(sample)
        totals.1 += value(sample, "alloc_space")
        totals.2 += value(sample, "samples")
      }
    }
    return totals
  }

  /// Bytes per allocated-type leaf frame.
  func bytesByType() -> [String: Int64] {
    var result: [String: Int64] = [:]
    for thread in threads {
      for sample in thread.samples {
        guard let leaf = stacks[sample.stack].first, let line = locations[leaf].lines.first,
          functions[line.function].isAllocatedType
        else { continue }
        result[functions[line.function].name, default: 0] += value(sample, "alloc_space")
      }
    }
    return result
  }
}

func within(_ value: Int64, of truth: Double, _ tolerance: Double = 0.10) -> Bool {
  abs(Double(value) - truth) <= truth * tolerance
}

/// Raw memory through the runtime (`swift_slowAlloc` → malloc).
@inline(never) func makeRawBlocks(_ count: Int) {
  for index in 0..<count {
    let block = UnsafeMutableRawPointer.allocate(byteCount: 4096, alignment: 16)
    block.storeBytes(of: index, as: Int.self)
    consume(block.load(as: Int.self))
    block.deallocate()
  }
}

extension SamplingSuite {
  @Suite struct Allocations {
    static let rate = 65_536

    /// Issue 30: the allocating function is the leaf, not the runtime's
    /// allocator entry (`swift_slowAlloc` was the leaf, with all the bytes
    /// as self, and the leaking function only in the total column).
    @Test func rawAllocationsAreChargedToTheCallerNotTheRuntime() async throws {
      let session = try Profiler.shared.start(mode: .alloc, options: options())
      makeRawBlocks(20_000)
      let profile = try await session.stop()
      var leaves: [String: Int64] = [:]
      for thread in profile.threads {
        for sample in thread.samples {
          let names = profile.names(ofStack: sample.stack)  // root first
          guard names.contains(where: { $0.contains("makeRawBlocks") }) else { continue }
          let frames = profile.functionsOfStack(sample.stack).map { profile.functions[$0] }.filter { !$0.isAllocatedType }
          leaves[frames.last?.name ?? "?", default: 0] += sample.values[1]
        }
      }
      print("raw allocations by leaf: \(leaves)")
      let total = leaves.values.reduce(0, +)
      #expect(total > 20_000 * 4096 / 2, "\(total) bytes under makeRawBlocks")
      #expect(!leaves.keys.contains { $0.contains("swift_slowAlloc") }, "\(leaves)")
      let own = leaves.filter { $0.key.contains("makeRawBlocks") }.values.reduce(0, +)
      #expect(own * 10 >= total * 9, "\(leaves)")
    }

    func options() -> SessionOptions {
      var options = SessionOptions()
      options.allocationSamplingRate = Self.rate
      return options
    }

    @Test func payloadsAndBuffersAreEstimatedWithinTenPercent() async throws {
      let started = ContinuousClock.now
      let session = try Profiler.shared.start(mode: .alloc, options: options())
      makePayloads(2_000_000)
      makeBuffers(200_000)
      let elapsed = ContinuousClock.now - started
      if elapsed < .seconds(2) { try await Task.sleep(for: .seconds(2) - elapsed) }
      let profile = try await session.stop()

      #expect(profile.mode == .alloc)
      #expect(UInt64(profile.period) == UInt64(Self.rate))
      let payloads = profile.allocations(containing: "makePayloads")
      let buffers = profile.allocations(containing: "makeBuffers")
      // An array of 1024 UInt8 is one heap block: 32 bytes of header + 1024.
      let bufferBytes = 200_000.0 * (32 + 1024)
      print("payloads \(payloads) of 2000000 / 96000000; buffers \(buffers) of 200000 / \(bufferBytes)")
      #expect(within(payloads.objects, of: 2_000_000), "Payload objects \(payloads.objects)")
      #expect(within(payloads.bytes, of: 2_000_000 * 48), "Payload bytes \(payloads.bytes)")
      #expect(within(buffers.objects, of: 200_000), "buffers \(buffers.objects)")
      #expect(within(buffers.bytes, of: bufferBytes), "buffer bytes \(buffers.bytes)")
      #expect(payloads.raw > 500 && buffers.raw > 1000, "raw samples \(payloads.raw), \(buffers.raw)")

      // The type of the Swift objects is the leaf of their stacks.
      let types = profile.bytesByType()
      let payloadType = types.first { $0.key.hasSuffix(".Payload") }
      #expect(payloadType != nil, "types: \(types.keys.sorted())")
      #expect(within(payloadType?.value ?? 0, of: 2_000_000 * 48))

      // Top allocating frames of this file's code: per sample, the first
      // frame (from the leaf) of a function written here.
      var byFunction: [String: Int64] = [:]
      var total: Int64 = 0
      for thread in profile.threads {
        for sample in thread.samples {
          total += profile.value(sample, "alloc_space")
          for index in profile.stacks[sample.stack] {
            guard let line = profile.locations[index].lines.last else { continue }
            let function = profile.functions[line.function]
            guard function.file.hasSuffix("AllocationTests.swift"), !function.name.contains("init") else { continue }
            byFunction[function.name, default: 0] += profile.value(sample, "alloc_space")
            break
          }
        }
      }
      let top = byFunction.sorted { $0.value > $1.value }.prefix(2).map(\.key)
      #expect(top.count == 2 && top.contains { $0.contains("makePayloads") } && top.contains { $0.contains("makeBuffers") },
              "top: \(byFunction.sorted { $0.value > $1.value }.prefix(4))")
      #expect(profile.metadata["alloc_redirected_entries"].flatMap(Int.init) ?? 0 > 0)
    }

    @Test func everyEntryIsRestoredAndTheProcessKeepsAllocating() async throws {
      let session = try Profiler.shared.start(mode: .alloc, options: options())
      #expect(cap_alloc_redirected_entries() > 0)
      let callsBefore = cap_alloc_thread_calls()
      // Memory allocated while the wrappers are in place, freed after.
      var blocks: [UnsafeMutableRawPointer] = []
      for size in stride(from: 16, to: 65_536, by: 97) { blocks.append(malloc(size)!) }
      var objects: [Payload] = (0..<10_000).map { _ in Payload() }
      #expect(cap_alloc_thread_calls() > callsBefore, "the wrappers ran")
      _ = try await session.stop()

      #expect(cap_alloc_redirected_entries() == 0)
      let callsAfterStop = cap_alloc_thread_calls()
      for index in blocks.indices { blocks[index] = realloc(blocks[index], 128)! }
      for block in blocks { free(block) }
      objects.removeAll()
      makePayloads(10_000)
      makeBuffers(1_000)
      #expect(cap_alloc_thread_calls() == callsAfterStop, "allocations after stop are not intercepted")

      // A further 2 s storm on 4 threads.
      let deadline = ContinuousClock.now + .seconds(2)
      onThreads(4) { _ in
        while ContinuousClock.now < deadline {
          makePayloads(10_000)
          makeBuffers(500)
        }
      }
      #expect(cap_alloc_redirected_entries() == 0)
    }

    @Test func eightThreadsAllocatingConcurrently() async throws {
      let session = try Profiler.shared.start(mode: .alloc, options: options())
      let perThread = 250_000
      onThreads(8) { _ in makeThreadPayloads(perThread) }
      let profile = try await session.stop()
      let threads = profile.allocations(containing: "makeThreadPayloads")
      let tids = Set(profile.threads.filter { thread in
        thread.samples.contains { profile.names(ofStack: $0.stack).contains { $0.contains("makeThreadPayloads") } }
      }.map(\.id))
      print("8 threads: \(threads) of \(8 * perThread) objects, \(tids.count) threads")
      #expect(within(threads.objects, of: Double(8 * perThread)), "objects \(threads.objects)")
      #expect(within(threads.bytes, of: Double(8 * perThread * 64)), "bytes \(threads.bytes)")
      #expect(tids.count == 8)
      #expect(profile.statistics.droppedSamples == 0)
    }

    @Test func continuousTotalsOnlyGrow() async throws {
      try Profiler.shared.enableContinuousAllocationSampling(rate: Self.rate)
      defer { Profiler.shared.disableContinuousAllocationSampling() }
      makePayloads(200_000)
      let first = try #require(Profiler.shared.cumulativeAllocationProfile())
      makePayloads(200_000)
      let second = try #require(Profiler.shared.cumulativeAllocationProfile())
      let a = first.allocations(containing: "makePayloads")
      let b = second.allocations(containing: "makePayloads")
      #expect(b.bytes > a.bytes && b.objects > a.objects)
      #expect(within(b.objects, of: 400_000, 0.2), "cumulative objects \(b.objects)")
      #expect(first.metadata["alloc_cumulative"] == "true")

      // A window while continuous mode runs is the difference of two totals.
      let session = try Profiler.shared.start(mode: .alloc, options: options())
      makePayloads(300_000)
      let window = try await session.stop()
      #expect(within(window.allocations(containing: "makePayloads").objects, of: 300_000, 0.2))
      #expect(cap_alloc_redirected_entries() > 0, "continuous mode stays installed")
      Profiler.shared.disableContinuousAllocationSampling()
      #expect(cap_alloc_redirected_entries() == 0)
      #expect(Profiler.shared.cumulativeAllocationProfile() == nil)
    }
  }
}
