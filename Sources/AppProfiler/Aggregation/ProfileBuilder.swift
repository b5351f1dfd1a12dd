import AppProfilerFormats
import CAppProfiler

/// Builds the ``Profile`` model from collected samples: resolves repeats,
/// charges lost samples to synthetic frames, symbolizes every address.
struct ProfileBuilder {
  var mode: Profile.Mode
  var startTimeNanoseconds: UInt64
  var startMonotonicNanoseconds: UInt64
  var durationNanoseconds: UInt64
  /// What the sampler reported: counters, engine, period, metadata.
  var report: SessionReport
  var symbolizer: Symbolizer = .shared
  /// Time allowed for source locations of new addresses (see
  /// `SessionOptions.symbolicationBudget`); nil = no limit.
  var symbolicationBudget: Duration? = SessionOptions().symbolicationBudget
  /// `SessionOptions.sourceLocations`: false, ELF names only.
  var sourceLocations = true
  /// Thread dumps: each thread's kernel state, read now.
  var recordsKernelState = false
  /// Leave the profiler's own threads out (their time goes to the metadata).
  var excludesProfilerThreads = false

  /// The Swift runtime's allocation entry points: an allocation sampled
  /// inside one is charged to its caller, the code that allocated
  /// (`UnsafeMutableRawPointer.allocate` reaches malloc through
  /// `swift_slowAlloc`; objects through `swift_allocObject`, whose frames the
  /// recorder already drops when it knows the type).
  static let allocatorEntries: Set<String> = [
    "swift_slowAlloc", "swift_slowAllocTyped", "swift_allocObject", "_swift_allocObject_", "swift_allocBox",
    "swift_allocEmptyBox", "swift_coroFrameAlloc",
    // The task registry's malloc wrapper (task_registry_linux.c), under a task's allocation.
    "cap_task_malloc",
  ]

  /// Removes allocator entry frames at the leaf end of each stack (after the
  /// allocated type's frame), keeping at least one frame: the leaf is then
  /// the function that allocated, in every format.
  static func dropAllocatorEntries(from profile: inout Profile) {
    let entries = Set(
      profile.locations.indices.filter { index in
        guard let outer = profile.locations[index].lines.last else { return false }
        return allocatorEntries.contains(profile.functions[outer.function].systemName)
      })
    guard !entries.isEmpty else { return }
    for index in profile.stacks.indices {
      var stack = profile.stacks[index]
      var leaf = 0
      if let first = stack.first, let line = profile.locations[first].lines.last,
        profile.functions[line.function].isAllocatedType
      {
        leaf = 1
      }
      while leaf + 1 < stack.count && entries.contains(stack[leaf]) { stack.remove(at: leaf) }
      profile.stacks[index] = stack
    }
  }

  /// glibc functions in which a thread waits in the kernel.
  static let blockingFunctions: Set<String> = [
    "__futex_abstimed_wait_common", "futex_wait", "__lll_lock_wait", "__lll_lock_wait_private",
    "epoll_wait", "epoll_pwait", "epoll_pwait2", "poll", "__poll", "ppoll", "select", "__select", "pselect",
    "accept", "accept4", "__libc_accept", "recv", "__libc_recv", "recvfrom", "recvmsg", "__libc_recvmsg",
    "read", "__read", "__libc_read", "__read_nocancel", "readv", "pread64", "__libc_pread",
    "nanosleep", "__nanosleep", "clock_nanosleep", "__clock_nanosleep", "sigsuspend", "__sigsuspend",
    "sigtimedwait", "sigwaitinfo", "pause", "wait4", "waitid", "__waitpid", "msgrcv", "semop", "semtimedop",
    "sem_wait", "sem_timedwait", "__new_sem_wait_slow64", "do_futex_wait",
  ]

  var period: UInt64 { report.period }

  func build(from collector: inout SampleCollector) -> Profile {
    var perThread = collector.resolvedSamples()
    var profilerTime: UInt64 = 0
    if excludesProfilerThreads {
      for tid in collector.profilerThreads {
        guard let samples = perThread.removeValue(forKey: tid) else { continue }
        // Time they were sampled running: cpu samples, non-idle wall samples.
        profilerTime += samples.reduce(0) { $0 + ($1.flags & UInt16(CAP_SAMPLE_IDLE) != 0 ? 0 : $1.count) } * period
      }
    }
    let dropped = report.samplesDropped
    if dropped > 0 {
      let stack = collector.stackID([SyntheticFrame.droppedSamples.rawValue])
      // Alloc mode: each lost sample stood for about one rate's worth of bytes.
      let rate = Double(period)
      perThread[0] = [
        .init(timestamp: startMonotonicNanoseconds, count: UInt64(dropped), stack: stack, flags: 0,
              objects: Double(dropped), bytes: Double(dropped) * rate)
      ]
    }

    // Stacks in use, renumbered densely in first-use order of sorted threads.
    let threadIDs = perThread.keys.sorted()
    var stackRemap: [Int32: Int] = [:]
    var usedStacks: [[UInt64]] = []
    for tid in threadIDs {
      for sample in perThread[tid]! {
        guard let stack = sample.stack, stackRemap[stack] == nil else { continue }
        stackRemap[stack] = usedStacks.count
        usedStacks.append(collector.stacks[Int(stack)])
      }
    }

    // Distinct addresses, symbolized in one batch.
    var addresses: [UInt64] = []
    var seen = Set<UInt64>()
    for stack in usedStacks {
      for address in stack where seen.insert(address).inserted { addresses.append(address) }
    }
    let description = Self.sampleTypes(of: mode)
    var profile = Profile(
      mode: mode, engine: report.engine, sampleTypes: description.sampleTypes,
      defaultSampleType: description.defaultSampleType, periodType: description.periodType,
      period: Int64(clamping: period), startTimeNanoseconds: startTimeNanoseconds, durationNanoseconds: durationNanoseconds)
    let located = Self.addLocations(
      addresses, to: &profile, symbolizer: symbolizer, budget: symbolicationBudget, sourceLocations: sourceLocations,
      hasTypes: mode.isAllocation, syntheticName: collector.syntheticName)
    profile.stacks = usedStacks.map { $0.map { located.index[$0]! } }
    if mode.isAllocation { Self.dropAllocatorEntries(from: &profile) }

    // Wall mode: a thread whose leaf is a blocking system call wrapper was
    // waiting in the kernel at that moment, even if it ran earlier in the
    // interval (the ticker's "did it run?" test only sees the interval).
    var blockedStacks = Set<Int>()
    if mode == .wall {
      for (index, stack) in profile.stacks.enumerated() {
        guard let leaf = stack.first, let line = profile.locations[leaf].lines.last else { continue }
        if Self.blockingFunctions.contains(profile.functions[line.function].systemName) {
          blockedStacks.insert(index)
        }
      }
    }

    // Signal-blocked samples are idle unless the kernel said the thread ran.
    let runningName = KernelThreadState(systemCall: nil, waitChannel: nil, isRunning: true).frameName
    var runningStacks = Set<Int32>()
    for (index, stack) in collector.stacks.enumerated()
    where stack.count == 2 && stack[1] == SyntheticFrame.signalBlocked.rawValue
      && collector.syntheticName(stack[0]) == runningName
    {
      runningStacks.insert(Int32(index))
    }

    for tid in threadIDs {
      let name = tid == 0 ? "[dropped samples]" : (collector.threadNames[tid] ?? "thread-\(tid)")
      let samples = perThread[tid]!.compactMap { raw -> Profile.Sample? in
        guard let rawStack = raw.stack, let stack = stackRemap[rawStack] else { return nil }
        let timestamp = raw.timestamp > startMonotonicNanoseconds ? raw.timestamp - startMonotonicNanoseconds : 0
        let isIdle =
          mode.isEvent ? false
          : raw.flags & UInt16(CAP_SAMPLE_IDLE) != 0 || blockedStacks.contains(stack)
            || (raw.flags & UInt16(CAP_SAMPLE_SIGNAL_BLOCKED) != 0 && !runningStacks.contains(rawStack))
        return Profile.Sample(
          stack: stack, timestampNanoseconds: timestamp, values: Self.values(of: raw, mode: mode, period: period),
          isIdle: isIdle, labels: collector.labels(of: raw.labels), numericLabels: Self.taskLabel(raw.task))
      }
      var thread = Profile.ThreadSamples(id: tid, name: name, samples: samples)
      if recordsKernelState && tid > 0 { thread.kernelState = KernelThreadState.read(tid).description }
      profile.threads.append(thread)
    }
    profile.statistics.droppedSamples = dropped
    profile.statistics.truncatedSamples = collector.truncatedSamples
    profile.statistics.threadsNotSampled = report.threadsNotSampled
    profile.statistics.missedTicks = report.missedTicks
    profile.statistics.samplesRecorded = report.samplesRecorded
    profile.statistics.completeStacks = report.completeStacks
    profile.statistics.threadsSignalBlocked = report.threadsSignalBlocked
    // Threads the signal could not reach were not sampled either; name them.
    let unreachable = threadIDs.filter { tid in
      perThread[tid]!.contains { $0.flags & UInt16(CAP_SAMPLE_SIGNAL_BLOCKED) != 0 }
    }
    profile.statistics.threadsNotSampled += Int64(unreachable.count)
    if !unreachable.isEmpty {
      profile.metadata["threads_not_sampled"] = unreachable.map { "\(collector.threadNames[$0] ?? "thread") (\($0)): signal blocked" }
        .joined(separator: ", ")
    }
    let pending = located.sourcePending
    if pending > 0 {
      // Named by their ELF symbols; file:line and inlined frames were still
      // being computed when the budget ran out (ready for the next profile).
      profile.metadata["source_locations_pending"] = String(pending)
    }
    profile.metadata["executable"] = ImageMap.executablePath()
    profile.metadata["pid"] = String(getpid())
    for (key, value) in report.metadata { profile.metadata[key] = value }
    if excludesProfilerThreads && !mode.isEvent {
      // The profiler's own threads, left out of the samples above.
      profile.metadata["profiler_cpu_seconds"] = String(Double(profilerTime) / 1e9)
    }
    profile.metadata["library_version"] = AppProfilerVersion.current
    return profile
  }

  /// Adds the locations of `addresses` (symbolized in one batch; their
  /// functions and mappings) to `profile`, which has none yet. Returns each
  /// address's location index and how many frames still wait for file:line.
  /// Addresses below 4096 are synthetic frames (`syntheticName`); with
  /// `hasTypes`, top-bit addresses are allocated types.
  static func addLocations(
    _ addresses: [UInt64], to profile: inout Profile, symbolizer: Symbolizer, budget: Duration?, sourceLocations: Bool,
    hasTypes: Bool, syntheticName: (UInt64) -> String
  ) -> (index: [UInt64: Int], sourcePending: Int) {
    var addressIndex: [UInt64: Int] = [:]
    for (index, address) in addresses.enumerated() { addressIndex[address] = index }
    // Images unloaded since the samples were taken are kept by the history.
    let images = ImageHistory.shared.symbolicationMap()
    // Only alloc samples carry type frames. In cpu and wall stacks a value
    // with the top bit set is a garbage return address (a frame the unwinder
    // misread), never metadata to dereference.
    let real = addresses.filter { $0 >= 4096 && !(hasTypes && SyntheticFrame.isTypeFrame($0)) }
    let resolvedList = symbolizer.resolve(real, in: images, budget: budget, sourceLocations: sourceLocations)
    var resolved: [UInt64: ResolvedFrame] = [:]
    for (address, frame) in zip(real, resolvedList) { resolved[address] = frame }

    var mappingIndex: [Int: Int] = [:]
    var functionIndex: [String: Int] = [:]
    func function(_ name: String, _ systemName: String, _ file: String = "") -> Int {
      let key = name + "\u{0}" + systemName + "\u{0}" + file
      if let existing = functionIndex[key] { return existing }
      profile.functions.append(.init(name: name, systemName: systemName, file: file))
      functionIndex[key] = profile.functions.count - 1
      return profile.functions.count - 1
    }
    for address in addresses {
      if address < 4096 {
        let name = syntheticName(address)
        profile.locations.append(.init(address: 0, mapping: nil, lines: [.init(function: function(name, ""))]))
        continue
      }
      if hasTypes && SyntheticFrame.isTypeFrame(address) {
        let name = Self.typeName(metadata: address & ~SyntheticFrame.typeFrameTag)
        profile.locations.append(
          .init(address: 0, mapping: nil, lines: [.init(function: function(name, Profile.Function.allocatedTypeMarker))]))
        continue
      }
      let frame = resolved[address] ?? ResolvedFrame(image: nil, functions: [])
      var mapping: Int? = nil
      if let image = frame.image {
        if let existing = mappingIndex[image] {
          mapping = existing
        } else {
          let loaded = images.images[image]
          let start = loaded.executableSegments.map(\.start).min() ?? 0
          let end = loaded.executableSegments.map(\.end).max() ?? 0
          let offset = loaded.executableSegments.first { $0.start == start }?.fileOffset ?? 0
          profile.mappings.append(
            .init(start: start, end: end, fileOffset: offset, path: loaded.path, buildID: loaded.buildID))
          mappingIndex[image] = profile.mappings.count - 1
          mapping = profile.mappings.count - 1
        }
      }
      let lines = frame.functions.map { Profile.Line(function: function($0.name, $0.systemName, $0.file), line: $0.line) }
      profile.locations.append(.init(address: address, mapping: mapping, lines: lines))
    }
    // A function's start line: the lowest line of it this profile saw (its
    // first sampled statement, at or after the declaration; DWARF's
    // decl_line would need a second symbolication pass). speedscope shows
    // it as the frame's line, pprof as start_line.
    for location in profile.locations {
      for line in location.lines where line.line > 0 {
        let current = profile.functions[line.function].startLine
        if current == 0 || line.line < current { profile.functions[line.function].startLine = line.line }
      }
    }

    return (addressIndex, resolvedList.count { $0.sourcePending })
  }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
