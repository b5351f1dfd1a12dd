@testable import AppProfilerServer
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

extension ServerSuite {
  /// Acceptance 5: permissions, symlink refusal, stale records, cleanup; fork.
  @Suite struct Discovery {
    func mode(_ path: String) -> UInt32 {
      var info = stat()
      lstat(path, &info)
      return UInt32(info.st_mode) & 0o777
    }

    /// The record's start time, formatted without Foundation's date formatters.
    @Test func startTimeIsISO8601UTC() {
      #expect(DiscoveryRecord.utcTimestamp(0) == "1970-01-01T00:00:00Z")
      #expect(DiscoveryRecord.utcTimestamp(1_795_446_000) == "2026-11-23T15:00:00Z")
      #expect(DiscoveryRecord.utcTimestamp(1_795_446_000 + 86_399) == "2026-11-24T14:59:59Z")
    }

    @Test func permissionsRecordAndCleanup() throws {
      let parent = TemporaryDirectory()
      defer { parent.remove() }
      let directory = parent.path + "/runtime"
      // A stale record of a dead process, with its socket file.
      let dead = Process()
      dead.executableURL = URL(fileURLWithPath: "/bin/true")
      try dead.run()
      dead.waitUntilExit()
      mkdir(directory, 0o700)
      let stalePath = "\(directory)/app-profiler-\(dead.processIdentifier).json"
      let staleSocket = "\(directory)/app-profiler-\(dead.processIdentifier).sock"
      let stale = """
        {"pid":\(dead.processIdentifier),"processStartTicks":1,"transport":"unix","address":"\(staleSocket)",\
        "url":"http://localhost","executable":"/bin/true","arguments":[],"startTime":"x","version":"0"}
        """
      _ = FileManager.default.createFile(atPath: stalePath, contents: Data(stale.utf8))
      _ = FileManager.default.createFile(atPath: staleSocket, contents: Data())

      let testee = try Testee(directory: directory)
      let socket = testee.address
      let record = "\(directory)/app-profiler-\(testee.pid).json"
      #expect(mode(directory) == 0o700)
      #expect(mode(socket) == 0o600)
      #expect(mode(record) == 0o600)
      #expect(!FileManager.default.fileExists(atPath: stalePath), "stale record not removed")
      #expect(!FileManager.default.fileExists(atPath: staleSocket), "stale socket not removed")
      let json = try #require(
        try JSONSerialization.jsonObject(with: FileManager.default.contents(atPath: record) ?? Data()) as? [String: Any])
      #expect(json["pid"] as? Int == Int(testee.pid))
      #expect(json["transport"] as? String == "unix")
      #expect(json["address"] as? String == socket)
      #expect((json["executable"] as? String)?.hasSuffix("AppProfilerTestee") == true)
      #expect((json["processStartTicks"] as? Int ?? 0) > 0)
      #expect(testee.finish() == 0)
      #expect(!FileManager.default.fileExists(atPath: socket))
      #expect(!FileManager.default.fileExists(atPath: record))
    }

    @Test func exitWithoutStopStillCleansUp() throws {
      let directory = TemporaryDirectory()
      defer { directory.remove() }
      let testee = try Testee(directory: directory.path, arguments: ["--no-stop"])
      let socket = testee.address
      #expect(FileManager.default.fileExists(atPath: socket))
      #expect(testee.finish() == 0)
      #expect(!FileManager.default.fileExists(atPath: socket))
      #expect(!FileManager.default.fileExists(atPath: "\(directory.path)/app-profiler-\(testee.pid).json"))
    }

    @Test func symlinkedDirectoryIsRefused() throws {
      let parent = TemporaryDirectory()
      defer { parent.remove() }
      let target = parent.path + "/elsewhere"
      mkdir(target, 0o700)
      let link = parent.path + "/runtime"
      symlink(target, link)
      #expect {
        _ = try Testee(directory: link, arguments: ["--failure-mode", "throw"])
      } throws: { error in
        "\(error)".contains("symbolic link")
      }
      #expect((try? FileManager.default.contentsOfDirectory(atPath: target))?.isEmpty == true)
    }

    @Test func openDirectoryIsRefused() throws {
      let parent = TemporaryDirectory()
      defer { parent.remove() }
      let open = parent.path + "/runtime"
      mkdir(open, 0o777)
      chmod(open, 0o777)
      #expect {
        _ = try Testee(directory: open, arguments: ["--failure-mode", "throw"])
      } throws: { error in
        "\(error)".contains("accessible to other users")
      }
    }

    @Test func forkedChildLeavesParentFilesAlone() throws {
      let directory = TemporaryDirectory()
      defer { directory.remove() }
      let testee = try Testee(directory: directory.path, arguments: ["--fork-child"])
      let child = try testee.readLine(timeout: 10)
      #expect(child.hasPrefix("CHILD "))
      #expect(try testee.readLine(timeout: 10) == "CHILD-EXITED")
      #expect(FileManager.default.fileExists(atPath: testee.address))
      #expect(FileManager.default.fileExists(atPath: "\(directory.path)/app-profiler-\(testee.pid).json"))
      let answer = try Curl.get(testee, "/profile?duration=0.2")
      #expect(answer.status == 200)
      #expect(testee.finish() == 0)
    }
  }

  /// Acceptance 6: remote binding needs an opt-in and a token; tokens are checked.
  @Suite struct Security {
    @Test func nonLoopbackWithoutTokenIsRefused() throws {
      let directory = TemporaryDirectory()
      defer { directory.remove() }
      #expect {
        _ = try Testee(directory: directory.path, arguments: ["--host", "0.0.0.0", "--allow-remote", "--failure-mode", "throw"])
      } throws: { error in
        "\(error)".contains("refusing to listen on non-loopback host 0.0.0.0")
      }
      #expect {
        _ = try Testee(directory: directory.path, arguments: ["--host", "0.0.0.0", "--token", "secret", "--failure-mode", "throw"])
      } throws: { error in
        "\(error)".contains("refusing")
      }
    }

    @Test func tokenIsRequiredWhenSet() throws {
      try withTestee(arguments: ["--host", "0.0.0.0", "--allow-remote", "--token", "s3cret"]) { testee in
        let port = URL(string: testee.address)!.port!
        let url = "http://127.0.0.1:\(port)/profile?duration=0.1"
        let missing = try Curl.request(url: url, headers: ["Origin: https://www.speedscope.app"])
        #expect(missing.status == 401)
        #expect(missing.headers["www-authenticate"] == "Bearer")
        #expect(missing.headers["access-control-allow-origin"] == "https://www.speedscope.app")
        let wrong = try Curl.request(url: url, headers: ["Authorization: Bearer s3creT"])
        #expect(wrong.status == 401)
        let right = try Curl.request(url: url, headers: ["Authorization: Bearer s3cret"])
        #expect(right.status == 200)
      }
    }
  }
}
