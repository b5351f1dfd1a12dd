import AppProfiler
import ArgumentParser
import Foundation
import Synchronization

/// Opens a file with the desktop's handler, or says where it is.
enum Opener {
  static func open(_ path: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["xdg-open", path]
    process.standardError = FileHandle.nullDevice
    if (try? process.run()) == nil {
      print("open \(path) in a browser")
    }
  }
}
