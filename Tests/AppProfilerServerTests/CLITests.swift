import AppProfilerFormats
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The built `app-profiler` executable.
func cli(_ arguments: [String], environment: [String: String] = [:]) throws -> (status: Int32, output: String, error: String) {
  let testBinary = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
  let path = URL(fileURLWithPath: testBinary).deletingLastPathComponent().appendingPathComponent("app-profiler").path
  return try run(path, arguments, environment: environment)
}

extension ServerSuite {
  /// Issue 6: the CLI against a real process with a profile server.
  @Suite struct CommandLine {
    /// The target dies mid-recording: the CLI says so, not "connection reset".
    @Test func recordSaysTheProcessEnded() throws {
      let scratch = TemporaryDirectory()
      defer { scratch.remove() }
      try withTestee { testee in
        let pid = testee.pid
        let killer = Thread {
          usleep(1_000_000)
          kill(pid, SIGKILL)
        }
        killer.start()
        let record = try cli(
          ["record", String(pid), "--duration", "5", "-o", scratch.path + "/gone.json"],
          environment: ["APP_PROFILER_DIR": testee.directory])
        #expect(record.status == 2, "\(record.error)")
        #expect(record.error.contains("the process ended (pid \(pid)) while recording"), "\(record.error)")
        #expect(!FileManager.default.fileExists(atPath: scratch.path + "/gone.json"))
      }
    }

    @Test func listRecordTopConvertThreads() throws {
      let scratch = TemporaryDirectory()
      defer { scratch.remove() }
      try withTestee { testee in
        let pid = String(testee.pid)
        let env = ["APP_PROFILER_DIR": testee.directory]
        // list
        let list = try cli(["list"], environment: env)
        #expect(list.status == 0, "\(list.error)")
        #expect(list.output.contains(pid) && list.output.contains("AppProfilerTestee"), "\(list.output)")
        let json = try cli(["list", "--json"], environment: env)
        let records = try #require(try JSONSerialization.jsonObject(with: Data(json.output.utf8)) as? [[String: Any]])
        #expect(records.contains { $0["pid"] as? Int == Int(testee.pid) })

        // record, each format, by pid
        for (format, file) in [("speedscope", "p.speedscope.json"), ("pprof", "p.pb.gz"), ("collapsed", "p.txt"), ("html", "p.html")] {
          let path = scratch.path + "/" + file
          let record = try cli(["record", pid, "--duration", "0.5", "-o", path], environment: env)
          #expect(record.status == 0, "\(format): \(record.error)")
          let bytes = [UInt8](FileManager.default.contents(atPath: path) ?? Data())
          switch format {
          case "speedscope":
            let check = try run("python3", [repositoryRoot + "/Tests/Support/validate_speedscope.py", path])
            #expect(check.status == 0, "\(check.output)\(check.error)")
          case "pprof":
            #expect(try PprofDecoder().decode(bytes).totalCount > 0)
            let top = try goPprof(["-top", path], scratch: scratch.path)
            #expect(top.status == 0, "\(top.error)")
          case "collapsed":
            #expect(try CollapsedDecoder().decode(bytes).totalCount > 0)
          default:
            #expect(String(decoding: bytes, as: UTF8.self).contains("id=\"profile-data\""))
          }
        }

        // top, from a file and straight from the process
        let top = try cli(["top", scratch.path + "/p.pb.gz", "--limit", "3"])
        #expect(top.status == 0, "\(top.error)")
        let firstRow = top.output.split(separator: "\n").dropFirst(2).first ?? ""
        #expect(firstRow.contains("testeeHotInner"), "\(top.output)")
        let live = try cli(["top", testee.address, "--duration", "0.5", "--limit", "3"])
        #expect(live.status == 0, "\(live.error)")
        #expect(live.output.split(separator: "\n").dropFirst(2).first?.contains("testeeHotInner") == true, "\(live.output)")

        // convert speedscope → pprof → collapsed keeps the totals
        let original = try SpeedscopeDecoder().decode([UInt8](FileManager.default.contents(atPath: scratch.path + "/p.speedscope.json")!))
        #expect(try cli(["convert", scratch.path + "/p.speedscope.json", "-o", scratch.path + "/c.pb.gz"]).status == 0)
        #expect(try cli(["convert", scratch.path + "/c.pb.gz", "-o", scratch.path + "/c.txt"]).status == 0)
        let viaPprof = try PprofDecoder().decode([UInt8](FileManager.default.contents(atPath: scratch.path + "/c.pb.gz")!))
        let viaCollapsed = try CollapsedDecoder().decode([UInt8](FileManager.default.contents(atPath: scratch.path + "/c.txt")!))
        #expect(viaPprof.totalCount == original.totalCount)
        #expect(viaCollapsed.totalCount == original.totalCount)
        #expect(Set(viaPprof.threads.map(\.id)) == Set(original.threads.map(\.id)), "thread ids lost")
        #expect(viaPprof.functions.contains { $0.name.contains("testeeHotInner") && $0.file.hasSuffix("main.swift") })
        #expect(try cli(["convert", scratch.path + "/c.pb.gz", "-o", scratch.path + "/c.html"]).status == 0)

        // threads: every thread, the main one included
        let threads = try cli(["threads", pid], environment: env)
        #expect(threads.status == 0, "\(threads.error)")
        #expect(threads.output.contains("thread \(pid) "), "\(threads.output)")
        #expect(threads.output.contains("testee-hot"))
      }
    }

    /// `tasks`: grouped by chain, `--each` one entry per task,
    /// `--suspended-for` passed on; a bad duration is a usage error (64);
    /// the pprof dump works with `top` and converts to the HTML viewer.
    @Test func tasksListsParkedTasks() throws {
      let scratch = TemporaryDirectory()
      defer { scratch.remove() }
      try withTestee(arguments: ["--park-tasks", "12"]) { testee in
        #expect(try testee.readLine(timeout: 20).hasPrefix("PARKED "))
        let pid = String(testee.pid)
        let env = ["APP_PROFILER_DIR": testee.directory]
        let grouped = try cli(["tasks", pid], environment: env)
        #expect(grouped.status == 0, "\(grouped.error)")
        #expect(grouped.output.contains("12 tasks: suspended, waiting on continuation"), "\(grouped.output.prefix(1500))")
        #expect(grouped.output.contains("testeeParkedRequest"))
        let each = try cli(["tasks", testee.address, "--each", "--suspended-for", "0s"])
        #expect(each.status == 0, "\(each.error)")
        #expect(each.output.components(separatedBy: "testeeParkedRequest").count - 1 == 12, "\(each.output.prefix(1500))")
        let bad = try cli(["tasks", pid, "--suspended-for", "soon"], environment: env)
        #expect(bad.status == 64 && bad.error.contains("--suspended-for"), "\(bad.error)")

        let file = scratch.path + "/tasks.pb.gz"
        let pprof = try Curl.get(testee, "/debug/pprof/tasks")
        try pprof.body.write(to: URL(fileURLWithPath: file))
        let top = try cli(["top", file, "--limit", "5"])
        #expect(top.status == 0 && top.output.contains("tasks"), "\(top.output) \(top.error)")
        #expect(try cli(["convert", file, "-o", scratch.path + "/tasks.html"]).status == 0)
        let html = (try? String(contentsOfFile: scratch.path + "/tasks.html", encoding: .utf8)) ?? ""
        #expect(html.contains("testeeParkedRequest"))
      }
    }

    @Test func viewServesThePage() throws {
      let scratch = TemporaryDirectory()
      defer { scratch.remove() }
      try withTestee { testee in
        let file = scratch.path + "/p.pb.gz"
        #expect(try cli(["record", testee.address, "--duration", "0.3", "-o", file]).status == 0)
        let process = Process()
        let testBinary = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? ""
        process.executableURL = URL(fileURLWithPath: testBinary).deletingLastPathComponent().appendingPathComponent("app-profiler")
        process.arguments = ["view", file]
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        defer {
          process.terminate()
          process.waitUntilExit()
        }
        let line = String(decoding: out.fileHandleForReading.availableData, as: UTF8.self)
        let url = try #require(line.split(separator: " ").first { $0.hasPrefix("http://127.0.0.1:") }.map(String.init))
        let page = try Curl.request(url: url)
        #expect(page.status == 200)
        #expect(page.text.contains("id=\"profile-data\"") && page.text.contains("testeeHotInner"))
        // A page reaching it under another name (DNS rebinding) is refused.
        let rebound = try Curl.request(url: url, headers: ["Host: evil.example"])
        #expect(rebound.status == 421 && !rebound.text.contains("testeeHotInner"), "\(rebound.status)")
        let local = try Curl.request(url: url, headers: ["Host: localhost:1234"])
        #expect(local.status == 200)
      }
    }

    @Test func errorsAreOneLineWithTheirExitCode() throws {
      // A process that is gone.
      let dead = Process()
      dead.executableURL = URL(fileURLWithPath: "/bin/true")
      try dead.run()
      dead.waitUntilExit()
      let gone = try cli(["record", String(dead.processIdentifier), "--duration", "1"])
      #expect(gone.status == 2)
      #expect(gone.error == "app-profiler: no process with pid \(dead.processIdentifier)\n")

      // A live process without a profile server (this test process).
      let scratch = TemporaryDirectory()
      defer { scratch.remove() }
      let noServer = try cli(["threads", String(getpid())], environment: ["APP_PROFILER_DIR": scratch.path])
      #expect(noServer.status == 2)
      #expect(noServer.error.contains("has no profile server"), "\(noServer.error)")

      // A socket that is not a profile server.
      let socketPath = scratch.path + "/other.sock"
      let other = try ForeignSocket(path: socketPath)
      defer { other.stop() }
      let foreign = try cli(["threads", socketPath])
      #expect(foreign.status == 2)
      #expect(foreign.error.contains("is not an app-profiler server"), "\(foreign.error)")

      // Bad command line.
      let badDuration = try cli(["record", socketPath, "--duration", "-1"])
      #expect(badDuration.status == 64)
      #expect(badDuration.error.contains("--duration"), "\(badDuration.error)")

      try withTestee { testee in
        // Busy: a cpu profile at another interval is running.
        let long = try RawConnection(testee)
        long.send("GET /profile?duration=3&mode=cpu&interval=2000 HTTP/1.1\r\nHost: x\r\n\r\n")
        usleep(300_000)
        let busy = try cli(["record", testee.address, "--duration", "1", "--interval", "1000", "-o", scratch.path + "/x.json"])
        #expect(busy.status == 3)
        #expect(busy.error.contains("already being profiled; retry in"), "\(busy.error)")
        // Without --interval the recording shares the running sampler.
        let shared = try cli(["record", testee.address, "--duration", "0.5", "-o", scratch.path + "/shared.json"])
        #expect(shared.status == 0, "\(shared.error)")
        _ = long.readAll(timeout: 10)
        // A parameter the server rejects.
        let rejected = try cli(["record", testee.address, "--duration", "1", "--interval", "5", "-o", scratch.path + "/x.json"])
        #expect(rejected.status == 4)
        #expect(rejected.error.contains("invalid parameter interval='5'"), "\(rejected.error)")
      }
    }

    @Test func everySubcommandHelpHasAnExample() throws {
      for subcommand in ["list", "record", "top", "convert", "view", "threads", "tasks", "demo"] {
        let help = try cli([subcommand, "--help"])
        #expect(help.status == 0)
        #expect(help.output.contains("Example:") && help.output.contains("app-profiler \(subcommand)"), "\(subcommand)")
      }
      let root = try cli(["--help"])
      #expect(root.output.contains("Exit codes"))
    }

    @Test(
      .timeLimit(.minutes(3)),
      .disabled(if: underThreadSanitizer, "TSan's own runtime (__tsan_read8, VectorClock) tops the demo's cpu profile"))
    func demoWritesFilesThatValidate() throws {
      let scratch = TemporaryDirectory()
      defer { scratch.remove() }
      let output = scratch.path + "/demo"
      let demo = try cli(["demo", "--duration", "1", "--output", output])
      #expect(demo.status == 0, "\(demo.error)")
      #expect(demo.output.contains("demoHashPassword"), "\(demo.output)")
      for mode in ["cpu", "wall"] {
        let speedscope = try run("python3", [repositoryRoot + "/Tests/Support/validate_speedscope.py", "\(output)/\(mode).speedscope.json"])
        #expect(speedscope.status == 0, "\(speedscope.output)\(speedscope.error)")
        let pprof = try goPprof(["-top", "\(output)/\(mode).pb.gz"], scratch: scratch.path)
        #expect(pprof.status == 0, "\(pprof.error)")
        let html = try String(contentsOfFile: "\(output)/\(mode).html", encoding: .utf8)
        #expect(html.contains("id=\"profile-data\""))
        // Issue 22: the profiler's own threads (request, drain, ticker,
        // symbolication, the server's loop) and code are not in the app's profile.
        let data = try #require(FileManager.default.contents(atPath: "\(output)/\(mode).speedscope.json"))
        let json = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let threads = (json["profiles"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }
        #expect(!threads.isEmpty)
        #expect(!threads.contains { $0.hasPrefix("app-prof") || $0.hasPrefix("NIO-ELT") }, "\(mode): \(threads)")
        let frames = ((json["shared"] as? [String: Any])?["frames"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }
        let ours = frames.filter {
          $0.hasPrefix("AppProfiler.") || $0.hasPrefix("AppProfilerServer.") || $0.hasPrefix("cap_")
            || $0.contains("DwarfLineNumberInfo")
        }
        #expect(ours.isEmpty, "\(mode) profile has the profiler's frames: \(ours.prefix(10))")
      }
      // The demo cleans up after itself: no discovery directory is left.
      let leftovers = try FileManager.default.contentsOfDirectory(atPath: "/tmp").filter { $0.hasPrefix("app-profiler-demo-") }
      #expect(leftovers.isEmpty, "\(leftovers)")
    }
  }
}

/// A Unix socket that answers like some other HTTP server.
final class ForeignSocket: @unchecked Sendable {
  private let fd: Int32
  private let thread: Thread

  init(path: String) throws {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
      for (index, byte) in bytes.enumerated() { raw[index] = byte }
    }
    _ = withUnsafePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
    listen(fd, 4)
    self.fd = fd
    thread = Thread {
      while true {
        let client = accept(fd, nil, nil)
        if client < 0 { return }
        var buffer = [UInt8](repeating: 0, count: 1024)
        _ = recv(client, &buffer, buffer.count, 0)
        let answer = Array("HTTP/1.1 200 OK\r\nServer: other\r\nContent-Length: 2\r\n\r\nhi".utf8)
        _ = answer.withUnsafeBufferPointer { send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        close(client)
      }
    }
    thread.start()
  }

  func stop() {
    shutdown(fd, Int32(SHUT_RDWR))
    close(fd)
  }
}
