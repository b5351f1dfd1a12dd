/// A recorded profile: what every encoder reads and every decoder produces.
///
/// The layout follows pprof's `Profile` message so that no format loses
/// information on the way through it:
///
/// - ``mappings``: the loaded images (executable, shared libraries).
/// - ``locations``: one per distinct instruction address, each pointing to a
///   mapping and carrying zero or more ``Line``s (several when functions were
///   inlined; innermost first). A location without lines is unsymbolized and
///   still shows as `image+0xoffset`.
/// - ``functions``: names (demangled), mangled names and source files.
/// - ``stacks``: arrays of location indices, **leaf first**.
/// - ``threads``: per thread, the samples in time order; a sample names a stack.
///
/// What a sample measures is data, as in pprof: ``sampleTypes`` (e.g.
/// `samples/count` + `cpu/nanoseconds`, or `alloc_objects/count` +
/// `alloc_space/bytes` + `samples/count`), one value per type in each sample,
/// a ``defaultSampleType``, and a ``period`` with its ``periodType``.
/// Encoders read those types and units and never ask which kind of profile
/// they are writing, so a new profile type (lock waits, in-use heap) is a
/// recorder plus a description of its sample types. ``mode`` only names the
/// kind, for titles and file names.
///
/// Values are deterministic: encoders sort where the order is not given by
/// the model, so golden files stay stable.
public struct Profile: Sendable, Hashable {
  /// The name of a kind of profile (`cpu`, `wall`, `alloc`, or any other):
  /// what a user asks for with `mode=`. Only a name: encoders read
  /// ``Profile/sampleTypes`` for everything else.
  public struct Mode: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public var description: String { rawValue }

    /// Threads using CPU: a sample is one interval of CPU time.
    public static let cpu = Mode(rawValue: "cpu")
    /// Every thread, running or blocked: a sample is one interval of wall time.
    public static let wall = Mode(rawValue: "wall")
    /// Sampled allocations, weighted by bytes.
    public static let alloc = Mode(rawValue: "alloc")
    /// Sampled allocations and which of them are still alive (Go's heap
    /// profile: alloc_objects, alloc_space, inuse_objects, inuse_space).
    public static let heap = Mode(rawValue: "heap")
    /// Contended lock acquisitions, by the waiter's stack (Go's block
    /// profile: contentions, delay).
    public static let block = Mode(rawValue: "block")
    /// The same waits charged to the holder's stack at the unlock that
    /// ended them (Go's mutex profile: contentions, delay).
    public static let mutex = Mode(rawValue: "mutex")
    /// The kinds this library records.
    public static let allCases: [Mode] = [.cpu, .wall, .alloc, .heap, .block, .mutex]

    /// alloc and heap: recorded by the allocation wrappers, sized in bytes.
    public var isAllocation: Bool { self == .alloc || self == .heap }
    /// block and mutex: recorded by the lock wrappers, sized in nanoseconds.
    public var isLock: Bool { self == .block || self == .mutex }
    /// Recorded by wrappers at events (allocations, lock waits), not by a
    /// sampling clock: no interval.
    public var isEvent: Bool { isAllocation || isLock }
  }

  /// A sample type or period type: what is measured and in which unit
  /// (pprof's `ValueType`), e.g. `cpu`/`nanoseconds`, `alloc_space`/`bytes`.
  public struct ValueType: Sendable, Hashable, CustomStringConvertible {
    public var type: String
    public var unit: String
    public init(_ type: String, _ unit: String) {
      self.type = type
      self.unit = unit
    }
    public var description: String { "\(type)/\(unit)" }
  }

  public var mode: Mode
  /// The sampling engine that ran, e.g. `perf_event(task-clock)`.
  public var engine: String
  /// What each value of a sample measures, in the order of ``Sample/values``.
  public var sampleTypes: [ValueType]
  /// Index into ``sampleTypes`` of the value viewers show by default (the
  /// weight in speedscope and the flame graph).
  public var defaultSampleType: Int
  /// What one period is: `cpu/nanoseconds` (one sampling interval) or
  /// `space/bytes` (the mean bytes between allocation samples).
  public var periodType: ValueType
  /// The sampling period in ``periodType``'s unit.
  public var period: Int64
  /// Start of the recording, nanoseconds since the Unix epoch.
  public var startTimeNanoseconds: UInt64
  /// Length of the recording, in nanoseconds.
  public var durationNanoseconds: UInt64
  public var mappings: [Mapping]
  public var locations: [Location]
  public var functions: [Function]
  public var stacks: [[Int]]
  public var threads: [ThreadSamples]
  public var statistics: Statistics
  /// Free-form facts about the recording (process, engine details).
  public var metadata: [String: String]

  public init(
    mode: Mode, engine: String, sampleTypes: [ValueType], defaultSampleType: Int = 0, periodType: ValueType,
    period: Int64, startTimeNanoseconds: UInt64, durationNanoseconds: UInt64, mappings: [Mapping] = [],
    locations: [Location] = [], functions: [Function] = [], stacks: [[Int]] = [], threads: [ThreadSamples] = [],
    statistics: Statistics = Statistics(), metadata: [String: String] = [:]
  ) {
    self.mode = mode
    self.engine = engine
    self.sampleTypes = sampleTypes
    self.defaultSampleType = defaultSampleType
    self.periodType = periodType
    self.period = period
    self.startTimeNanoseconds = startTimeNanoseconds
    self.durationNanoseconds = durationNanoseconds
    self.mappings = mappings
    self.locations = locations
    self.functions = functions
    self.stacks = stacks
    self.threads = threads
    self.statistics = statistics
    self.metadata = metadata
  }
}

extension Profile {
  /// A loaded image.
  public struct Mapping: Sendable, Hashable {
    /// Lowest address of the image's executable segment.
    public var start: UInt64
    /// One past its highest address.
    public var end: UInt64
    /// File offset of `start`.
    public var fileOffset: UInt64
    /// Path of the image on disk (`/proc/self/exe` resolved for the executable).
    public var path: String
    /// GNU build-id as lowercase hex, empty when the image has none.
    public var buildID: String

    public init(start: UInt64, end: UInt64, fileOffset: UInt64, path: String, buildID: String) {
      self.start = start
      self.end = end
      self.fileOffset = fileOffset
      self.path = path
      self.buildID = buildID
    }

    /// The file name without its directory.
    public var fileName: String {
      path.split(separator: "/").last.map(String.init) ?? path
    }
  }

  /// A function.
  public struct Function: Sendable, Hashable {
    /// Human-readable (demangled) name, or a synthetic name such as `[idle]`.
    public var name: String
    /// The symbol as stored in the binary (mangled), empty when unknown.
    public var systemName: String
    /// Source file, empty when unknown.
    public var file: String
    /// First line of the function, 0 when unknown.
    public var startLine: Int

    public init(name: String, systemName: String = "", file: String = "", startLine: Int = 0) {
      self.name = name
      self.systemName = systemName
      self.file = file
      self.startLine = startLine
    }

    /// True for frames the profiler adds (`[idle]`, `[truncated]`, ...).
    public var isSynthetic: Bool { name.hasPrefix("[") && name.hasSuffix("]") }

    /// ``systemName`` of an allocated type's frame (the leaf of a Swift
    /// object's allocation stack in alloc profiles).
    public static let allocatedTypeMarker = "$type"

    /// True for the leaf frame naming the type a Swift allocation created.
    public var isAllocatedType: Bool { systemName == Self.allocatedTypeMarker }
  }

  /// One source position inside a location.
  public struct Line: Sendable, Hashable {
    /// Index into ``Profile/functions``.
    public var function: Int
    /// Source line, 0 when unknown.
    public var line: Int

    public init(function: Int, line: Int = 0) {
      self.function = function
      self.line = line
    }
  }

  /// One instruction address.
  public struct Location: Sendable, Hashable {
    /// The interrupted PC for a leaf frame; return address − 1 (inside the
    /// call instruction) for callers. 0 for synthetic frames.
    public var address: UInt64
    /// Index into ``Profile/mappings``, nil for synthetic frames.
    public var mapping: Int?
    /// Innermost first: with inlining, the last entry is the real (outer) function.
    public var lines: [Line]

    public init(address: UInt64, mapping: Int?, lines: [Line]) {
      self.address = address
      self.mapping = mapping
      self.lines = lines
    }
  }

  /// One sample.
  public struct Sample: Sendable, Hashable {
    /// Index into ``Profile/stacks``.
    public var stack: Int
    /// Nanoseconds since the start of the recording.
    public var timestampNanoseconds: UInt64
    /// One value per ``Profile/sampleTypes``, in that order.
    public var values: [Int64]
    /// The thread was blocked (not running) at this sample (wall profiles).
    public var isIdle: Bool
    /// String labels, pprof's `label` with `str` (route, span id, …).
    public var labels: [String: String]
    /// Numeric labels, pprof's `label` with `num` (task id, …).
    public var numericLabels: [String: Int64]

    public init(
      stack: Int, timestampNanoseconds: UInt64, values: [Int64], isIdle: Bool = false,
      labels: [String: String] = [:], numericLabels: [String: Int64] = [:]
    ) {
      self.stack = stack
      self.timestampNanoseconds = timestampNanoseconds
      self.values = values
      self.isIdle = isIdle
      self.labels = labels
      self.numericLabels = numericLabels
    }
  }

  /// The samples of one thread.
  public struct ThreadSamples: Sendable, Hashable {
    /// Kernel thread id (0 for synthetic groups such as dropped samples).
    public var id: Int32
    /// Thread name from `/proc/self/task/<tid>/comm`.
    public var name: String
    public var samples: [Sample]
    /// Thread dumps: what the kernel said the thread was doing when the dump
    /// was taken (`running`, `blocked in futex (futex_wait_queue)`); nil in
    /// profiles.
    public var kernelState: String? = nil

    public init(id: Int32, name: String, samples: [Sample]) {
      self.id = id
      self.name = name
      self.samples = samples
    }

  }

  /// What the recording lost or cut, shown as synthetic frames too.
  public struct Statistics: Sendable, Hashable {
    /// Interrupts that found the sample buffer full (charged to `[dropped samples]`).
    public var droppedSamples: Int64 = 0
    /// Samples whose stack was deeper than the maximum depth (root side cut).
    public var truncatedSamples: Int64 = 0
    /// Threads that could not be sampled (exited while arming, table full).
    public var threadsNotSampled: Int64 = 0
    /// Wall ticks skipped because the sampler fell behind.
    public var missedTicks: Int64 = 0
    /// Samples the signal handler recorded.
    public var samplesRecorded: Int64 = 0
    /// Of those, samples whose walk reached the thread's outermost frame
    /// (CFI unwinding only): a measure of stack completeness.
    public var completeStacks: Int64 = 0
    /// Threads found blocking the sampling signal: listed with their kernel
    /// state under a `[signal blocked]` frame instead of a stack.
    public var threadsSignalBlocked: Int64 = 0

    public init() {}
  }
}

extension Profile.Mode {
  /// The values `mode=` (server, middleware) and `--mode` (CLI) accept.
  public static let parameterValues = "cpu, wall, alloc, object, heap, block, mutex"

  /// Parses `mode=`: `cpu`, `wall`, `alloc`, and `object` (the name Ruby
  /// app_profiler uses) for alloc. The one place the mode is parsed.
  public init?(parameter: String) {
    switch parameter.lowercased() {
    case "cpu": self = .cpu
    case "wall": self = .wall
    case "alloc", "object": self = .alloc
    case "heap", "inuse": self = .heap
    case "block": self = .block
    case "mutex": self = .mutex
    default: return nil
    }
  }
}

extension Profile {
  /// Index of the sample type named `type`, nil when the profile has none.
  public func sampleTypeIndex(_ type: String) -> Int? {
    sampleTypes.firstIndex { $0.type == type }
  }

  /// Index of the sample type that counts events (the first with unit
  /// `count`: samples, allocated objects, contentions), nil when none does.
  public var countSampleType: Int? {
    sampleTypes.firstIndex { $0.unit == "count" }
  }

  /// The value of `sample` for the sample type named `type`; 0 when absent.
  public func value(_ sample: Sample, _ type: String) -> Int64 {
    guard let index = sampleTypeIndex(type), index < sample.values.count else { return 0 }
    return sample.values[index]
  }

  /// The value of `sample` for the default sample type.
  public func defaultValue(_ sample: Sample) -> Int64 {
    defaultSampleType < sample.values.count ? sample.values[defaultSampleType] : 0
  }

  /// The events `sample` stands for: its value of ``countSampleType``
  /// (samples, objects…), 1 when the profile has no count type.
  public func count(_ sample: Sample) -> Int64 {
    guard let index = countSampleType, index < sample.values.count else { return 1 }
    return sample.values[index]
  }

  /// Sum of ``count(_:)`` over all samples of all threads.
  public var totalCount: Int64 { threads.reduce(0) { $0 + totalCount(of: $1) } }

  /// Sum of ``count(_:)`` over the samples of `thread`.
  public func totalCount(of thread: ThreadSamples) -> Int64 {
    thread.samples.reduce(0) { $0 + count($1) }
  }

  /// Sum of ``count(_:)`` over the samples of `thread` not marked idle.
  public func busyCount(of thread: ThreadSamples) -> Int64 {
    thread.samples.reduce(0) { $0 + ($1.isIdle ? 0 : count($1)) }
  }

  /// The functions of a stack, root first, inlined frames expanded.
  public func functionsOfStack(_ index: Int) -> [Int] {
    var result: [Int] = []
    for location in stacks[index].reversed() {
      for line in locations[location].lines.reversed() {
        result.append(line.function)
      }
    }
    return result
  }

  /// A name for a location without symbol information: `image+0xoffset`.
  public func fallbackName(for location: Location) -> String {
    guard let mappingIndex = location.mapping, mappingIndex < mappings.count else {
      return "0x" + String(location.address, radix: 16)
    }
    let mapping = mappings[mappingIndex]
    let offset = location.address &- mapping.start &+ mapping.fileOffset
    return mapping.fileName + "+0x" + String(offset, radix: 16)
  }
}
