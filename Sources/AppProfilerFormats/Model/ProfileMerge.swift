extension Profile {
  /// One profile of consecutive recordings of one kind (the flight
  /// recorder's one-second windows): mappings, functions, locations and
  /// stacks shared, each thread's samples in order with timestamps from the
  /// first recording's start, statistics summed. Mode, sample types and
  /// period are the first's (the recordings must agree on sample types:
  /// others are left out). Nil for no profiles.
  public static func merged(_ profiles: [Profile]) -> Profile? {
    guard let first = profiles.first else { return nil }
    let last = profiles.max { $0.startTimeNanoseconds + $0.durationNanoseconds < $1.startTimeNanoseconds + $1.durationNanoseconds }!
    let end = last.startTimeNanoseconds + last.durationNanoseconds
    var result = Profile(
      mode: first.mode, engine: first.engine, sampleTypes: first.sampleTypes, defaultSampleType: first.defaultSampleType,
      periodType: first.periodType, period: first.period, startTimeNanoseconds: first.startTimeNanoseconds,
      durationNanoseconds: end > first.startTimeNanoseconds ? end - first.startTimeNanoseconds : 0,
      metadata: last.metadata)
    var mappingIndex: [Mapping: Int] = [:]
    var functionIndex: [Function: Int] = [:]
    var locationIndex: [Location: Int] = [:]
    var stacks = StackInterner()
    var threadIndex: [Int32: Int] = [:]
    for profile in profiles where profile.sampleTypes == first.sampleTypes {
      let mappings = profile.mappings.map { mapping -> Int in
        if let index = mappingIndex[mapping] { return index }
        result.mappings.append(mapping)
        mappingIndex[mapping] = result.mappings.count - 1
        return result.mappings.count - 1
      }
      let functions = profile.functions.map { function -> Int in
        if let index = functionIndex[function] { return index }
        result.functions.append(function)
        functionIndex[function] = result.functions.count - 1
        return result.functions.count - 1
      }
      let locations = profile.locations.map { location -> Int in
        var mapped = location
        mapped.mapping = location.mapping.map { mappings[$0] }
        mapped.lines = location.lines.map { Line(function: functions[$0.function], line: $0.line) }
        if let index = locationIndex[mapped] { return index }
        result.locations.append(mapped)
        locationIndex[mapped] = result.locations.count - 1
        return result.locations.count - 1
      }
      var stackMap: [Int: Int] = [:]
      let offset = profile.startTimeNanoseconds > first.startTimeNanoseconds ? profile.startTimeNanoseconds - first.startTimeNanoseconds : 0
      for thread in profile.threads {
        let slot: Int
        if let existing = threadIndex[thread.id] {
          slot = existing
          result.threads[slot].name = thread.name
        } else {
          var empty = thread
          empty.samples = []
          result.threads.append(empty)
          slot = result.threads.count - 1
          threadIndex[thread.id] = slot
        }
        for var sample in thread.samples {
          if let mapped = stackMap[sample.stack] {
            sample.stack = mapped
          } else {
            let mapped = stacks.intern(profile.stacks[sample.stack].map { locations[$0] }, in: &result)
            stackMap[sample.stack] = mapped
            sample.stack = mapped
          }
          sample.timestampNanoseconds += offset
          result.threads[slot].samples.append(sample)
        }
      }
      result.statistics.droppedSamples += profile.statistics.droppedSamples
      result.statistics.truncatedSamples += profile.statistics.truncatedSamples
      result.statistics.threadsNotSampled = max(result.statistics.threadsNotSampled, profile.statistics.threadsNotSampled)
      result.statistics.missedTicks += profile.statistics.missedTicks
      result.statistics.samplesRecorded += profile.statistics.samplesRecorded
      result.statistics.completeStacks += profile.statistics.completeStacks
      result.statistics.threadsSignalBlocked = max(
        result.statistics.threadsSignalBlocked, profile.statistics.threadsSignalBlocked)
    }
    return result
  }
}

extension Profile {
  /// What changed from `base` to this profile: this profile's samples, and
  /// `base`'s with every value negated, in one profile (as `go tool pprof
  /// -diff_base` builds it). Summed per function or stack, a value is the
  /// growth (positive) or shrinkage (negative) between the two: what a
  /// leak added between two heap profiles, where time went in a cpu profile
  /// that it did not before. Nil when the two measure different things
  /// (other sample types).
  public func difference(from base: Profile) -> Profile? {
    guard base.sampleTypes == sampleTypes else { return nil }
    var negated = base
    for thread in negated.threads.indices {
      for sample in negated.threads[thread].samples.indices {
        negated.threads[thread].samples[sample].values = negated.threads[thread].samples[sample].values.map { 0 &- $0 }
      }
    }
    negated.startTimeNanoseconds = startTimeNanoseconds
    guard var result = Profile.merged([self, negated]) else { return nil }
    result.durationNanoseconds = durationNanoseconds
    result.metadata = metadata
    result.metadata["diff_base_start_ns"] = String(base.startTimeNanoseconds)
    result.statistics = statistics
    return result
  }
}

extension Profile {
  /// The call paths whose value grew, for drawing a difference (from
  /// ``difference(from:)``) as a flame graph: values summed per call path
  /// (function names from the root, so two processes' profiles net out too),
  /// and only the paths whose `sampleType` (default: the profile's) grew
  /// kept, with their growth — one sample each, on one thread.
  public func growth(sampleType: String? = nil) -> Profile {
    let index = sampleType.flatMap { sampleTypeIndex($0) } ?? defaultSampleType
    var result = self
    result.threads = []
    var totals: [[Int]: (stack: Int, values: [Int64])] = [:]
    var order: [[Int]] = []
    for thread in threads {
      for sample in thread.samples {
        let path = functionsOfStack(sample.stack)
        if let existing = totals[path] {
          totals[path] = (existing.stack, zip(existing.values, sample.values).map { $0 &+ $1 })
        } else {
          totals[path] = (sample.stack, sample.values)
          order.append(path)
        }
      }
    }
    let samples = order.compactMap { path -> Sample? in
      let total = totals[path]!
      guard index < total.values.count, total.values[index] > 0 else { return nil }
      return Sample(stack: total.stack, timestampNanoseconds: 0, values: total.values.map { max(0, $0) })
    }
    result.threads = [ThreadSamples(id: 0, name: "growth", samples: samples)]
    result.metadata["difference"] = "growth only: call paths whose \(sampleTypes.indices.contains(index) ? sampleTypes[index].type : "value") grew"
    return result
  }
}
