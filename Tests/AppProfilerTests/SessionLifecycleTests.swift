import AppProfiler
import CAppProfiler
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A handler the tests install to see that sessions keep passing it the
/// signals that are not theirs.
private let testSIGPROFCalls = Atomic<Int>(0)
private func testSIGPROFHandler(_ signal: Int32) { testSIGPROFCalls.add(1, ordering: .relaxed) }

extension SamplingSuite {
  /// Acceptance 5 and 6: no leaks over many sessions, the app's handler
  /// still called, busy at once, recovery after errors.
  @Suite struct SessionLifecycle {
    @Test func twoHundredShortSessionsLeakNothing() async throws {
      var previous = sigaction()
      var custom = sigaction()
      custom.__sigaction_handler.sa_handler = testSIGPROFHandler
      sigemptyset(&custom.sa_mask)
      sigaction(SIGPROF, &custom, &previous)
      defer { sigaction(SIGPROF, &previous, nil) }

      var options = SessionOptions()
      // Warm up: the first session creates the drain task's threads.
      _ = try await Profiler.shared.record(mode: .cpu, duration: .milliseconds(20), interval: .milliseconds(1))
      let fdsBefore = countEntries("/proc/self/fd")
      let threadsBefore = countEntries("/proc/self/task")
      for index in 0..<200 {
        let mode: Profile.Mode = index % 3 == 2 ? .wall : .cpu
        options.cpuEngine = index % 3 == 1 ? .posixTimers : .automatic
        _ = try await Profiler.shared.record(mode: mode, duration: .milliseconds(20), interval: .milliseconds(1), options: options)
      }
      let fdsAfter = countEntries("/proc/self/fd")
      let threadsAfter = countEntries("/proc/self/task")
      let timers = readTextFile("/proc/self/timers").split(separator: "\n").count
      print("200 sessions: fds \(fdsBefore) → \(fdsAfter), threads \(threadsBefore) → \(threadsAfter), timer lines \(timers)")
      #expect(fdsAfter <= fdsBefore)
      #expect(threadsAfter <= threadsBefore + 1)
      #expect(timers == 0)
      // Our handler stays (a late SIGPROF must never meet SIG_DFL) and passes
      // signals that are not ours to the app's handler.
      #expect(cap_handler_installed(SIGPROF) == 1)
      let before = testSIGPROFCalls.load(ordering: .relaxed)
      var chainedBefore: UInt64 = 0, ignored: UInt64 = 0, stale: UInt64 = 0
      cap_signal_counters(&chainedBefore, &ignored, &stale)
      kill(getpid(), SIGPROF)
      let deadline = monotonicNanoseconds() + 2_000_000_000
      while testSIGPROFCalls.load(ordering: .relaxed) == before && monotonicNanoseconds() < deadline { usleep(1_000) }
      #expect(testSIGPROFCalls.load(ordering: .relaxed) == before + 1)
      var chainedAfter: UInt64 = 0
      cap_signal_counters(&chainedAfter, &ignored, &stale)
      #expect(chainedAfter == chainedBefore + 1, "the handler counts what it passes on")
    }

    /// An app that set SIGPROF to SIG_IGN with SA_SIGINFO in its flags: the
    /// handler must not call the union's value (1) as a function.
    @Test func ignoredDispositionWithSigInfoFlagIsNotCalled() async throws {
      var ignore = sigaction()
      ignore.__sigaction_handler.sa_handler = SIG_IGN
      ignore.sa_flags = SA_SIGINFO
      sigemptyset(&ignore.sa_mask)
      var previous = sigaction()
      sigaction(SIGPROF, &ignore, &previous)
      defer { sigaction(SIGPROF, &previous, nil) }
      _ = try await Profiler.shared.record(mode: .cpu, duration: .milliseconds(20), interval: .milliseconds(1))  // ours on top, chaining to SIG_IGN
      var chained: UInt64 = 0, ignoredBefore: UInt64 = 0, stale: UInt64 = 0
      cap_signal_counters(&chained, &ignoredBefore, &stale)
      kill(getpid(), SIGPROF)
      var ignoredAfter = ignoredBefore
      let deadline = monotonicNanoseconds() + 2_000_000_000
      while ignoredAfter == ignoredBefore && monotonicNanoseconds() < deadline {
        usleep(1_000)
        cap_signal_counters(&chained, &ignoredAfter, &stale)
      }
      #expect(ignoredAfter == ignoredBefore + 1)
    }

    /// Other sampling of a running kind is busy at once; the same sampling
    /// shares; another kind runs next to it.
    @Test func otherSamplingOfTheKindIsBusyAtOnce() async throws {
      let session = try Profiler.shared.start(mode: .cpu, interval: .milliseconds(1))
      let wall = try await Profiler.shared.record(mode: .wall, duration: .milliseconds(100), interval: .milliseconds(1))
      #expect(wall.mode == .wall && !wall.threads.isEmpty)
      let started = monotonicNanoseconds()
      #expect(throws: ProfilerError.busy) { _ = try Profiler.shared.start(mode: .cpu, interval: .milliseconds(2)) }
      var kernel = SessionOptions()
      kernel.includeKernelTime = false
      #expect(throws: ProfilerError.busy) { _ = try Profiler.shared.start(mode: .cpu, interval: .milliseconds(1), options: kernel) }
      #expect(monotonicNanoseconds() - started < 100_000_000)
      let sharing = try Profiler.shared.start(mode: .cpu, interval: .milliseconds(1))
      _ = try await session.stop()
      #expect(Profiler.shared.isBusy)
      _ = try await sharing.stop()
      #expect(!Profiler.shared.isBusy)
      let next = try await Profiler.shared.record(mode: .cpu, duration: .milliseconds(50), interval: .milliseconds(1))
      #expect(next.mode == .cpu)
    }

    @Test func errorsLeaveTheProfilerUsable() async throws {
      await #expect(throws: ProfilerError.self) {
        _ = try await Profiler.shared.record(duration: .seconds(1), interval: .microseconds(50))
      }
      await #expect(throws: ProfilerError.self) {
        _ = try await Profiler.shared.record(duration: .seconds(1), interval: .seconds(2))
      }
      await #expect(throws: ProfilerError.self) {
        _ = try await Profiler.shared.record(duration: .zero)
      }
      var badRate = SessionOptions()
      badRate.allocationSamplingRate = 0
      await #expect(throws: ProfilerError.self) {
        _ = try await Profiler.shared.record(mode: .alloc, duration: .seconds(1), options: badRate)
      }
      #expect(!Profiler.shared.isBusy)
      let profile = try await Profiler.shared.record(mode: .wall, duration: .milliseconds(50), interval: .milliseconds(1))
      #expect(profile.mode == .wall)
    }

    @Test func intervalErrorNamesTheRange() {
      do {
        _ = try Profiler.shared.start(interval: .microseconds(99))
        Issue.record("expected an error")
      } catch {
        let text = String(describing: error)
        #expect(text.contains("interval"))
        #expect(text.contains("100 µs ... 1 s"))
      }
    }

    @Test func cancellationStopsTheSession() async throws {
      let task = Task { try await Profiler.shared.record(mode: .wall, duration: .seconds(10), interval: .milliseconds(1)) }
      try await Task.sleep(for: .milliseconds(100))
      let started = monotonicNanoseconds()
      task.cancel()
      await #expect(throws: CancellationError.self) { _ = try await task.value }
      #expect(monotonicNanoseconds() - started < 1_000_000_000)
      #expect(!Profiler.shared.isBusy)
      #expect(timerCount() == 0)
    }

    /// Cancelling while the drain task may be mid-drain (ThreadSanitizer
    /// found the buffer being unmapped under a drain in this path).
    @Test func cancelRacesWithTheDrain() async throws {
      let stop = StopFlag()
      let worker = TestThread(name: "burn") { gammaWorkload(stop) }
      for _ in 0..<100 {
        let session = try Profiler.shared.start(mode: .cpu, interval: .microseconds(200))
        try await Task.sleep(for: .milliseconds(12))
        session.cancel()
      }
      stop.set()
      worker.join()
      #expect(!Profiler.shared.isBusy)
      #expect(timerCount() == 0)
    }

    @Test func droppedSessionReleasesTheSlot() async throws {
      do {
        _ = try Profiler.shared.start(mode: .cpu, interval: .milliseconds(1))
      }
      #expect(!Profiler.shared.isBusy)
      _ = try await Profiler.shared.record(mode: .cpu, duration: .milliseconds(20), interval: .milliseconds(1))
    }

    @Test func posixTimerEngineWorks() async throws {
      let stop = StopFlag()
      let worker = TestThread(name: "timer-burn") { gammaWorkload(stop) }
      var options = SessionOptions()
      options.cpuEngine = .posixTimers
      let profile = try await Profiler.shared.record(mode: .cpu, duration: .milliseconds(500), interval: .milliseconds(1), options: options)
      stop.set()
      worker.join()
      #expect(profile.engine.hasPrefix("posix_timer"))
      #expect(profile.count(containing: "gammaWorkload") > 20)
    }

    /// The automatic engine: POSIX timers at intervals of a scheduler tick or
    /// more (100 Hz), perf events below (timers where they are refused);
    /// each engine asked for by name runs.
    @Test func automaticEngineChoice() async throws {
      let stop = StopFlag()
      let worker = TestThread(name: "auto-burn") { gammaWorkload(stop) }
      defer {
        stop.set()
        worker.join()
      }
      let tick = cap_scheduler_tick_ns()
      try #require(tick >= 1_000_000 && tick <= 10_000_000, "CONFIG_HZ between 100 and 1000, got a \(tick) ns tick")
      let slow = try await Profiler.shared.record(mode: .cpu, duration: .milliseconds(300), interval: .milliseconds(10))
      #expect(slow.engine.hasPrefix("posix_timer"), "10 ms: \(slow.engine)")
      #expect(slow.count(containing: "gammaWorkload") > 10)
      let perfAllowed: Bool
      do {
        var options = SessionOptions()
        options.cpuEngine = .perfEvents
        _ = try await Profiler.shared.record(mode: .cpu, duration: .milliseconds(20), interval: .milliseconds(1), options: options)
        perfAllowed = true
      } catch {
        perfAllowed = false
      }
      let fast = try await Profiler.shared.record(
        mode: .cpu, duration: .milliseconds(300), interval: .nanoseconds(Int64(tick / 4)))
      #expect(fast.engine.hasPrefix(perfAllowed ? "perf_event" : "posix_timer"), "tick/4: \(fast.engine)")
      #expect(fast.count(containing: "gammaWorkload") > 10)
      for (engine, name) in [(SessionOptions.CPUEngine.posixTimers, "posix_timer"), (.cpuTicker, "cpu_ticker")] {
        var options = SessionOptions()
        options.cpuEngine = engine
        let profile = try await Profiler.shared.record(mode: .cpu, duration: .milliseconds(300), options: options)
        #expect(profile.engine.hasPrefix(name) && profile.count(containing: "gammaWorkload") > 10, "\(profile.engine)")
      }
    }
  }
}

/// POSIX timers of this process (/proc/self/timers has 4 lines per timer).
private func timerCount() -> Int {
  readTextFile("/proc/self/timers").split(separator: "\n").count
}
