import AppProfilerFormats
import CAppProfiler

/// Builds the ``Profile`` model from collected samples: resolves repeats,
/// charges lost samples to synthetic frames, symbolizes every address.
struct ProfileBuilder {
  var mode: Profile.Mode
  var intervalNanoseconds: UInt64
  var startTimeNanoseconds: UInt64
  var startMonotonicNanoseconds: UInt64
  var durationNanoseconds: UInt64
  var stats: cap_stats
  var symbolizer: Symbolizer = .shared
  /// Time allowed for source locations of new addresses (see
  /// `SessionOptions.symbolicationBudget`); nil = no limit.
  var symbolicationBudget: Duration? = SessionOptions().symbolicationBudget
  /// Alloc mode: the sampler's counters.
  var allocationStats: cap_alloc_stats? = nil
  /// Thread dumps: each thread's kernel state, read now.
  var recordsKernelState = false

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

  static func engineName(_ stats: cap_stats) -> String {
    switch Int(stats.engine) {
    case Int(CAP_ENGINE_PERF_EVENT):
      return stats.exclude_kernel != 0 ? "perf_event(task-clock, user only)" : "perf_event(task-clock, user+kernel)"
    case Int(CAP_ENGINE_POSIX_TIMER):
      return "posix_timer(thread-cpu-clock)"
    case Int(CAP_ENGINE_WALL_TICKER):
      return "wall_ticker(tgkill)"
    default:
      return "unknown"
    }
  }

  func build(from collector: inout SampleCollector) -> Profile {
    var perThread = collector.resolvedSamples()
    let dropped = Int64(stats.samples_dropped)
    if dropped > 0 {
      let stack = collector.stackID([SampleCollector.Synthetic.droppedSamples.rawValue])
      // Alloc mode: each lost sample stood for about one rate's worth of bytes.
      let rate = Double(intervalNanoseconds)
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
      for sample in perThread[tid]! where stackRemap[sample.stack] == nil {
        stackRemap[sample.stack] = usedStacks.count
        usedStacks.append(collector.stacks[Int(sample.stack)])
      }
    }

    // Distinct addresses, symbolized in one batch.
    var addressIndex: [UInt64: Int] = [:]
    var addresses: [UInt64] = []
    for stack in usedStacks {
      for address in stack where addressIndex[address] == nil {
        addressIndex[address] = addresses.count
        addresses.append(address)
      }
    }
    // Images unloaded since the samples were taken are kept by the history.
    let images = ImageHistory.shared.symbolicationMap()
    // Only alloc samples carry type frames. In cpu and wall stacks a value
    // with the top bit set is a garbage return address (a frame the unwinder
    // misread), never metadata to dereference.
    let hasTypes = mode == .alloc
    let real = addresses.filter { $0 >= 4096 && !(hasTypes && SampleCollector.isTypeFrame($0)) }
    let resolvedList = symbolizer.resolve(real, in: images, budget: symbolicationBudget)
    var resolved: [UInt64: ResolvedFrame] = [:]
    for (address, frame) in zip(real, resolvedList) { resolved[address] = frame }

    var profile = Profile(
      mode: mode, engine: Self.engineName(stats), intervalNanoseconds: intervalNanoseconds,
      startTimeNanoseconds: startTimeNanoseconds, durationNanoseconds: durationNanoseconds)
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
        let name = collector.syntheticName(address)
        profile.locations.append(.init(address: 0, mapping: nil, lines: [.init(function: function(name, ""))]))
        continue
      }
      if hasTypes && SampleCollector.isTypeFrame(address) {
        let name = Self.typeName(metadata: address & ~SampleCollector.typeFrameTag)
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
    profile.stacks = usedStacks.map { $0.map { addressIndex[$0]! } }

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
    where stack.count == 2 && stack[1] == SampleCollector.Synthetic.signalBlocked.rawValue
      && collector.syntheticName(stack[0]) == runningName
    {
      runningStacks.insert(Int32(index))
    }

    for tid in threadIDs {
      let name = tid == 0 ? "[dropped samples]" : (collector.threadNames[tid] ?? "thread-\(tid)")
      let samples = perThread[tid]!.map { raw in
        let timestamp = raw.timestamp > startMonotonicNanoseconds ? raw.timestamp - startMonotonicNanoseconds : 0
        if mode == .alloc {
          return Profile.Sample(
            stack: stackRemap[raw.stack]!, timestampNanoseconds: timestamp,
            count: max(1, Int64(raw.objects.rounded())), bytes: Int64(raw.bytes.rounded()),
            rawCount: Int64(raw.count))
        }
        return Profile.Sample(
          stack: stackRemap[raw.stack]!,
          timestampNanoseconds: timestamp,
          count: Int64(raw.count),
          isIdle: raw.flags & UInt16(CAP_SAMPLE_IDLE) != 0 || blockedStacks.contains(stackRemap[raw.stack]!)
            || (raw.flags & UInt16(CAP_SAMPLE_SIGNAL_BLOCKED) != 0 && !runningStacks.contains(raw.stack)))
      }
      var thread = Profile.ThreadSamples(id: tid, name: name, samples: samples)
      if recordsKernelState && tid > 0 { thread.kernelState = KernelThreadState.read(tid).description }
      profile.threads.append(thread)
    }
    profile.statistics.droppedSamples = dropped
    profile.statistics.truncatedSamples = collector.truncatedSamples
    profile.statistics.threadsNotSampled = Int64(stats.threads_failed)
    profile.statistics.missedTicks = Int64(stats.missed_ticks)
    profile.statistics.samplesRecorded = Int64(stats.samples_written)
    profile.statistics.completeStacks = Int64(stats.complete_samples)
    profile.statistics.threadsSignalBlocked = Int64(stats.threads_signal_blocked)
    // Threads the signal could not reach were not sampled either; name them.
    let unreachable = threadIDs.filter { tid in
      perThread[tid]!.contains { $0.flags & UInt16(CAP_SAMPLE_SIGNAL_BLOCKED) != 0 }
    }
    profile.statistics.threadsNotSampled += Int64(unreachable.count)
    if !unreachable.isEmpty {
      profile.metadata["threads_not_sampled"] = unreachable.map { "\(collector.threadNames[$0] ?? "thread") (\($0)): signal blocked" }
        .joined(separator: ", ")
    }
    let pending = resolvedList.count { $0.sourcePending }
    if pending > 0 {
      // Named by their ELF symbols; file:line and inlined frames were still
      // being computed when the budget ran out (ready for the next profile).
      profile.metadata["source_locations_pending"] = String(pending)
    }
    profile.metadata["executable"] = ImageMap.executablePath()
    profile.metadata["pid"] = String(getpid())
    profile.metadata["threads_seen"] = String(stats.threads_seen)
    if mode == .wall {
      profile.metadata["wall_ticks"] = String(stats.ticks)
      profile.metadata["wall_signals_sent"] = String(stats.signals_sent)
      profile.metadata["wall_tick_mean_ns"] = String(stats.ticks > 0 ? stats.tick_ns_total / stats.ticks : 0)
      profile.metadata["wall_undelivered_ticks"] = String(stats.undelivered_ticks)
      profile.metadata["wall_ticks_signal_pending"] = String(stats.pending_skips)
    }
    if let allocation = allocationStats {
      profile.engine = "got_redirect(malloc, calloc, realloc, posix_memalign, aligned_alloc, memalign, swift_allocObject)"
      profile.statistics.completeStacks = Int64(allocation.complete_samples)
      profile.metadata["alloc_sample_rate_bytes"] = String(allocation.mean_bytes)
      profile.metadata["alloc_redirected_entries"] = String(allocation.patched_slots)
      profile.metadata["alloc_redirected_images"] = String(allocation.patched_images)
    }
    profile.metadata["library_version"] = AppProfilerVersion.current
    return profile
  }

  /// The name of the Swift type whose metadata swift_allocObject received.
  /// Classes get their qualified name; the runtime's own heap objects
  /// (boxes, closure contexts, tasks) a synthetic one.
  static func typeName(metadata: UInt64) -> String {
    guard metadata >= 4096, metadata % UInt64(MemoryLayout<UInt>.alignment) == 0,
      let pointer = UnsafeRawPointer(bitPattern: UInt(metadata))
    else { return "[Swift object]" }
    // MetadataKind: class metadata holds 0 (no Objective-C) or an isa
    // pointer (> 0x7FF); the others are small constants.
    let kind = pointer.load(as: UInt.self)
    switch kind {
    case 0, 0x800...:
      let type = unsafeBitCast(pointer, to: Any.Type.self)
      return _typeName(type, qualified: true)
    case 0x400: return "[Swift box or closure context]"
    case 0x500: return "[Swift generic box]"
    case 0x501: return "[Swift error]"
    case 0x502: return "[Swift task]"
    case 0x503: return "[Swift job]"
    default: return "[Swift object]"
    }
  }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
