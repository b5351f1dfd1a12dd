import Foundation
import Testing

/// Linux aarch64 keeps building: every C file of the sampler compiles for
/// `aarch64-linux-gnu` (the register seam, `registers_aarch64.h`), with
/// warnings as errors, against Debian's cross headers
/// (`libc6-dev-arm64-cross`, which `.ci/run` installs). Swift code has no
/// architecture-specific parts beyond `#if arch(x86_64)` guards.
@Suite struct CrossCompileTests {
  static let sysroot = "/usr/aarch64-linux-gnu/include"

  @Test func cTargetCompilesForLinuxAarch64() throws {
    guard FileManager.default.fileExists(atPath: Self.sysroot + "/linux/perf_event.h") else {
      Issue.record("no aarch64 cross headers in \(Self.sysroot): apt-get install libc6-dev-arm64-cross")
      return
    }
    let directory = repositoryRoot + "/Sources/CAppProfiler"
    let files = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".c") }.sorted()
    #expect(files.count >= 10)
    for file in files {
      let result = try run(
        "clang",
        ["--target=aarch64-linux-gnu", "-isystem", Self.sysroot, "-I", directory + "/include", "-fsyntax-only",
         "-Wall", "-Wextra", "-Werror", directory + "/" + file])
      #expect(result.status == 0, "\(file): \(result.error.prefix(2000))")
    }
  }
}
