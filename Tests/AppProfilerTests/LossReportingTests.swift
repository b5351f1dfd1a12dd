import AppProfiler
import Testing

/// Recurses `depth` frames, then burns CPU; the add after the call keeps
/// every frame on the stack.
@inline(never)
func deepRecursion(_ depth: Int, _ stop: StopFlag) {
  if depth == 0 {
    gammaWorkload(stop)
  } else {
    deepRecursion(depth - 1, stop)
    sink.wrappingAdd(1, ordering: .relaxed)
  }
}

extension SamplingSuite {
  /// Losses are never hidden: truncated stacks and dropped samples show as
  /// synthetic frames and counters.
  @Suite struct LossReporting {
    @Test(.disabled(if: underThreadSanitizer, "TSan runs signal handlers late, at a safe point, with the interrupted registers of a thread that has moved on"))
    func deepStacksAreMarkedTruncated() async throws {
      let stop = StopFlag()
      let worker = TestThread(name: "deep") { deepRecursion(400, stop) }
      let tid = worker.waitForTID()
      let profile = try await Profiler.shared.record(mode: .cpu, duration: .milliseconds(300), interval: .milliseconds(1))
      stop.set()
      worker.join()
      let thread = try #require(profile.thread(tid))
      let truncated = thread.samples.filter { profile.names(ofStack: $0.stack).first == "[truncated]" }
      #expect(profile.totalCount(of: thread) > 50)
      #expect(truncated.count == thread.samples.count, "\(truncated.count) of \(thread.samples.count) truncated")
      #expect(profile.statistics.truncatedSamples >= profile.totalCount(of: thread))
      // 256 frames recorded plus the synthetic root.
      #expect(profile.stacks[thread.samples[0].stack].count == 257)
    }

    @Test func droppedSamplesAreChargedToAFrame() async throws {
      let stop = StopFlag()
      let workers = (0..<2).map { _ in TestThread(name: "burn") { gammaWorkload(stop) } }
      var options = SessionOptions()
      options.bufferSlots = 16  // ~1.6 ms of samples at 10 kHz: the 10 ms drain cannot keep up
      let profile = try await Profiler.shared.record(
        mode: .cpu, duration: .milliseconds(500), interval: .microseconds(100), options: options)
      stop.set()
      workers.forEach { $0.join() }
      #expect(profile.statistics.droppedSamples > 0)
      let dropped = try #require(profile.threads.first { $0.name == "[dropped samples]" })
      #expect(profile.totalCount(of: dropped) == profile.statistics.droppedSamples)
      #expect(profile.names(ofStack: dropped.samples[0].stack) == ["[dropped samples]"])
      let json = String(decoding: SpeedscopeEncoder().encode(profile), as: UTF8.self)
      #expect(json.contains("[dropped samples]"))
      print("dropped \(profile.statistics.droppedSamples) of \(profile.statistics.droppedSamples + profile.statistics.samplesRecorded)")
    }
  }
}
