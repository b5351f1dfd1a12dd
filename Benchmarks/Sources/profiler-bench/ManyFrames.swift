import AppProfilerFormats
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The 10k-unique-frames scenario's process: loads the generated library
/// (run.sh writes and compiles it: `chains` call chains of `depth` distinct
/// functions each), parks one thread at the bottom of every chain, starts the
/// profile server and waits for stdin to close. run.sh then times the HTTP
/// profile from the end of `duration` to the last byte.
func benchManyFramesServer(library: String, chains: Int) async throws {
  guard let handle = dlopen(library, RTLD_NOW) else {
    throw BenchError("dlopen \(library): \(String(cString: dlerror()))")
  }
  guard let symbol = dlsym(handle, "frames_run") else { throw BenchError("frames_run missing in \(library)") }
  typealias Run = @convention(c) (Int, @convention(c) () -> Void) -> Int
  let run = unsafeBitCast(symbol, to: Run.self)
  for chain in 0..<chains {
    _ = Worker {
      _ = run(chain) {
        // Blocked at the bottom of its chain for the life of the process.
        manyFramesParked.add(1, ordering: .relaxed)
        while true { pause() }
      }
    }
  }
  while manyFramesParked.load(ordering: .relaxed) < chains { usleep(1000) }
  try await serveUntilStdinCloses(name: "frames", handlers: 0) { "READY \($0.port) \($0.socketPath)" }
}

let manyFramesParked = Atomic<Int>(0)

/// `profiler-bench count-frames FILE`: functions and frames of a speedscope
/// file, and how many of them come from the generated library.
func benchCountFrames(path: String) throws {
  guard let data = FileManager.default.contents(atPath: path) else { throw BenchError("cannot read \(path)") }
  let profile = try SpeedscopeDecoder().decode([UInt8](data))
  let generated = profile.functions.filter { $0.name.contains("chain") && $0.name.contains("_f") }
  let withFile = generated.filter { !$0.file.isEmpty }.count
  let anyWithFile = profile.functions.filter { !$0.file.isEmpty }.count
  print(
    "functions=\(profile.functions.count) functions_with_file=\(anyWithFile) generated_functions=\(generated.count) with_file=\(withFile) locations=\(profile.locations.count)")
}

struct BenchError: Error, CustomStringConvertible {
  let description: String
  init(_ description: String) { self.description = description }
}
