import AppProfiler
import CAppProfiler
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Every test that starts a profiling session is nested in this suite:
/// sessions are process-wide, and the timing-based tests must not share the
/// two cores with another session.
@Suite(.serialized) enum SamplingSuite {}

extension Profile {
  /// Function names of a stack, root first.
  func names(ofStack index: Int) -> [String] {
    functionsOfStack(index).map { functions[$0].name }
  }

  func thread(_ tid: Int32) -> ThreadSamples? {
    threads.first { $0.id == tid }
  }

  /// Sum of counts of samples (of all threads) whose stack contains a
  /// function whose name contains `fragment`.
  func count(containing fragment: String) -> Int64 {
    var memo: [Int: Bool] = [:]
    var total: Int64 = 0
    for thread in threads {
      for sample in thread.samples {
        let hit = memo[sample.stack] ?? names(ofStack: sample.stack).contains { $0.contains(fragment) }
        memo[sample.stack] = hit
        if hit { total += count(sample) }
      }
    }
    return total
  }
}

/// CPU time of another thread of this process (its per-thread CPU clock).
func cpuNanoseconds(ofThread tid: Int32) -> UInt64 {
  var ts = timespec()
  let clock = clockid_t(bitPattern: (~UInt32(bitPattern: tid)) << 3 | 6)
  guard clock_gettime(clock, &ts) == 0 else { return 0 }
  return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// True when `names` contains `sequence` in order (not necessarily adjacent).
func containsInOrder(_ names: [String], _ sequence: [String]) -> Bool {
  var next = 0
  for name in names where next < sequence.count && name.contains(sequence[next]) {
    next += 1
  }
  return next == sequence.count
}

func countEntries(_ directory: String) -> Int {
  guard let dir = opendir(directory) else { return -1 }
  defer { closedir(dir) }
  var count = 0
  while let entry = readdir(dir) {
    let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    if name != "." && name != ".." { count += 1 }
  }
  return count
}

/// Whole contents of a (small) file, "" when it cannot be read.
func readTextFile(_ path: String) -> String {
  let fd = open(path, O_RDONLY)
  guard fd >= 0 else { return "" }
  defer { close(fd) }
  var bytes: [UInt8] = []
  var chunk = [UInt8](repeating: 0, count: 65536)
  while true {
    let count = read(fd, &chunk, chunk.count)
    if count <= 0 { break }
    bytes.append(contentsOf: chunk[0..<count])
  }
  return String(decoding: bytes, as: UTF8.self)
}

/// True when this test process runs under ThreadSanitizer (`swift test
/// --sanitize=thread`). The few tests that cannot hold there say why in
/// their `.disabled(if:)` reason; BENCHMARKS.md (Sanitizers) lists them.
let underThreadSanitizer = dlsym(nil, "__tsan_init") != nil

/// True under AddressSanitizer (`swift test --sanitize=address`).
let underAddressSanitizer = dlsym(nil, "__asan_init") != nil
