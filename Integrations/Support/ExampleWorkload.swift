// The example apps' workload (symlinked into both example targets): a
// function that burns CPU and one that allocates, named so that profiles of
// /slow and /alloc show them.
import Synchronization

let exampleSink = Atomic<UInt64>(0)

/// Burns CPU for about `milliseconds`: the frame a cpu profile of /slow shows.
@inline(never)
public func exampleHotFunction(milliseconds: Int) -> UInt64 {
  let end = ContinuousClock.now + .milliseconds(milliseconds)
  var x: UInt64 = exampleSink.load(ordering: .relaxed) | 1
  while ContinuousClock.now < end {
    for i in 0..<10_000 { x = x &* 6_364_136_223_846_793_005 &+ UInt64(i) }
  }
  exampleSink.wrappingAdd(x, ordering: .relaxed)
  return x & 0xffff
}

public final class ExampleRecord {
  var id: Int
  var name: String
  init(id: Int) {
    self.id = id
    self.name = "record-\(id)"
  }
}

/// Allocates `count` objects and strings: what an alloc profile of /alloc shows.
@inline(never)
public func exampleAllocate(count: Int) -> Int {
  var total = 0
  for index in 0..<count {
    let record = ExampleRecord(id: index)
    total &+= record.name.utf8.count
  }
  return total
}
