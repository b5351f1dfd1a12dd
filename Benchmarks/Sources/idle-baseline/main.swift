// The baseline of the idle benchmark: a process that does not link
// swift-app-profiler at all and sleeps, like the profiled one.
import Foundation

print("READY \(getpid())")
fflush(nil)
while readLine() != nil {}
