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

/// Waits `milliseconds` for a dependency (a database, a downstream call):
/// the await a wall profile of /checkout puts most of its time under.
@inline(never)
public func exampleDependency(milliseconds: Int) async throws {
  try await Task.sleep(for: .milliseconds(milliseconds))
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

/// The hot function of the example's `/a` route.
@inline(never)
public func fnA(milliseconds: Int) -> UInt64 {
  let end = ContinuousClock.now + .milliseconds(milliseconds)
  var x: UInt64 = exampleSink.load(ordering: .relaxed) | 1
  repeat {
    // Only operators the compiler inlines even in debug builds: the
    // samples land in fnA itself, not in iterator or integer calls.
    var i: UInt64 = 0
    while i < 100_000 {
      x = (x &* 2_862_933_555_777_941_757 &+ i) ^ (x &>> 7)
      i &+= 1
    }
  } while ContinuousClock.now < end
  exampleSink.wrappingAdd(x, ordering: .relaxed)
  return x & 0xffff
}

/// The hot function of the example's `/b` route.
@inline(never)
public func fnB(milliseconds: Int) -> UInt64 {
  let end = ContinuousClock.now + .milliseconds(milliseconds)
  var x: UInt64 = exampleSink.load(ordering: .relaxed) | 3
  repeat {
    // Only operators the compiler inlines even in debug builds: the
    // samples land in fnB itself, not in iterator or integer calls.
    var i: UInt64 = 0
    while i < 100_000 {
      x = (x &* 3_935_559_000_370_003_845 &+ i) ^ (x &>> 11)
      i &+= 1
    }
  } while ContinuousClock.now < end
  exampleSink.wrappingAdd(x, ordering: .relaxed)
  return x & 0xffff
}

/// The hot function of the Vapor example's synchronous `/sync` route.
@inline(never)
public func fnSync(milliseconds: Int) -> UInt64 {
  let end = ContinuousClock.now + .milliseconds(milliseconds)
  var x: UInt64 = exampleSink.load(ordering: .relaxed) | 5
  repeat {
    var i: UInt64 = 0
    while i < 100_000 {
      x = (x &* 6_364_136_223_846_793_005 &+ i) ^ (x &>> 13)
      i &+= 1
    }
  } while ContinuousClock.now < end
  exampleSink.wrappingAdd(x, ordering: .relaxed)
  return x & 0xffff
}
