// The baseline of the idle benchmark: the same program as idle-server
// (Sources/idle-server/main.swift) without swift-app-profiler: an async
// main (so the process has Swift concurrency's threads, as a server has)
// that waits for stdin to close.
import Foundation

print("READY \(getpid())")
fflush(nil)
await Task.detached { while readLine() != nil {} }.value
