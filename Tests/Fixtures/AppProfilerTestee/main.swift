// A child process for the server's end-to-end tests.
//
//   AppProfilerTestee [--dir DIR] [--tcp] [--host H] [--port P] [--token T]
//                     [--allow-remote] [--no-stop] [--fork-child] [--alloc-worker]
//                     [--leak-worker BYTES_PER_SECOND]
//                     [--head-timeout S] [--max-duration-ms MS] [--max-connections N]
//                     [--failure-mode throw]
//
// Starts a CPU-bound worker (testeeHotLoop → testeeHotInner), a blocked
// thread, and a profile server; prints one line `READY <address>` (or
// `ERROR <message>`), then serves until stdin closes. Then it stops the
// server and exits 0 — or, with --no-stop, exits without stopping (the
// atexit cleanup must remove the files). --fork-child forks once after
// READY; the child prints `CHILD <pid>` and exits normally at once (it must
// leave the parent's socket and record alone). --alloc-worker adds a thread
// that allocates TesteeObject instances (testeeAllocLoop → testeeAllocate),
// ~50 MB/s with pauses, for the allocation-profile tests. --leak-worker adds
// a thread `testee-leak` that allocates TesteeLeak objects of 1 KiB
// (testeeLeakLoop → testeeLeak) at BYTES_PER_SECOND and keeps every one: a
// leak of a known rate, for the heap tests. --lock-contention adds two
// threads sharing a pthread mutex: `testee-holder` holds it for 3 ms of
// computing (testeeLockHolder) then pauses 1 ms; `testee-waiter` asks for
// it as soon as it is held (testeeLockWaiter) and so waits ~3 ms a round; the
// command LOCKWAIT answers `LOCKWAIT <ns>`, the waiter's measured wait so far.
//
// Hostile conditions ("the profiler never takes the app down"):
//   --sigprof-blocker     a thread `testee-sigblock` that blocks SIGPROF until
//                         the command UNBLOCK
//   --fifo-spinners N     N SCHED_FIFO threads spinning on CPU 0 (for 60 s at
//                         most), and a normal thread `testee-starved` pinned there; prints
//                         `FIFO ok` or `FIFO denied <errno>` after READY
//   --plugin PATH         a thread that dlopens PATH, calls plugin_work(),
//                         dlcloses it, forever
//   --app-handler         installs SIGPROF handler 1 before the server starts
//   --small-stack BYTES   a 64 KiB-stack thread that recurses until less than
//                         BYTES of stack remain, then spins there
//   --park-threads N      N more threads, each parked in a semaphore wait
//   --async-worker        a detached task testeeAsyncOuter → testeeAsyncMiddle →
//                         testeeAsyncInner that burns CPU in testeeAsyncBurn
//                         between Task.yield()s (async stacks over HTTP),
//                         labelled worker=async; the hot thread gets the
//                         thread label worker=hot
//   --block-pool          after READY, blocks every thread of the Swift
//                         concurrency cooperative pool (2 × cores tasks in
//                         testeePoolWait → DispatchSemaphore.wait) and prints
//                         `POOL-BLOCKED n` (n tasks running); at the end it
//                         exits without stopping the server (stop needs the pool)
//   --park-tasks N        after READY (before --block-pool), parks N tasks in
//                         a continuation (testeeParkedRequest →
//                         testeeParkedWait), 4 in Task.sleep (testeeSleeper),
//                         a task group of 3 (testeeGroupParent/Child), an
//                         async let (testeeAsyncLetParent/Child) and an actor
//                         call (TesteeGate.hold); prints `PARKED n` (n tasks)
// Commands on stdin (one line each; answers on stdout):
//   UNBLOCK      the blocker thread unblocks SIGPROF; answers UNBLOCKED
//   HANDLER n    installs SIGPROF handler n (1...3); answers HANDLER n
//   RAISE        kill(getpid(), SIGPROF), 200 ms pause; answers COUNTS c1 c2 c3
//   PLUGIN       answers PLUGIN <loops done>
//   PING         answers PONG (the process is alive and its main thread runs)
@_spi(Support) import AppProfiler
import AppProfilerServer
import Foundation
import Logging
import Synchronization

let testeeSink = Atomic<UInt64>(0)

@inline(never)
func testeeHotInner() {
  var x: UInt64 = testeeSink.load(ordering: .relaxed) | 1
  for i in 0..<50_000 { x = x &* 6_364_136_223_846_793_005 &+ UInt64(i) }
  testeeSink.wrappingAdd(x, ordering: .relaxed)
}

@inline(never)
func testeeHotLoop() {
  while true { testeeHotInner() }
}

/// 16 bytes of header + 32 of fields.
final class TesteeObject {
  var a = 0, b = 0, c = 0, d = 0
}

@_optimize(none) @inline(never) func testeeConsume(_ object: AnyObject) {}

@inline(never)
func testeeAllocate() {
  for index in 0..<1_000 {
    let object = TesteeObject()
    object.a = index
    testeeConsume(object)
  }
}

/// 16 bytes of header + 126 × 8: 1 KiB per object.
final class TesteeLeak {
  var payload = InlineArray<126, Int>(repeating: 0)
}

nonisolated(unsafe) var testeeLeaked: [TesteeLeak] = []

@inline(never)
func testeeLeak(_ count: Int) {
  for _ in 0..<count { testeeLeaked.append(TesteeLeak()) }
}

/// Every 10 ms, 1/100 of the rate in 1 KiB objects, kept forever.
@inline(never)
func testeeLeakLoop(bytesPerSecond: Int) {
  testeeLeaked.reserveCapacity(1 << 20)
  let start = ContinuousClock.now
  var leaked = 0
  while true {
    let elapsed = ContinuousClock.now - start
    let due = Int(Double(bytesPerSecond) * (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)) / 1024
    if due > leaked {
      testeeLeak(due - leaked)
      leaked = due
    }
    usleep(10_000)
  }
}

@inline(never)
func testeeAllocLoop() {
  while true {
    testeeAllocate()
    usleep(1_000)
  }
}

let arguments = Array(CommandLine.arguments.dropFirst())
func option(_ name: String) -> String? {
  guard let index = arguments.firstIndex(of: name), index + 1 < arguments.count else { return nil }
  return arguments[index + 1]
}
func flag(_ name: String) -> Bool { arguments.contains(name) }

// Log lines go to stderr: stdout carries the READY line and answers.
LoggingSystem.bootstrap(StreamLogHandler.standardError)

var configuration = ProfileServerConfiguration()
if option("--failure-mode") == "throw" { configuration.failureMode = .throw }
configuration.directory = option("--dir")
if flag("--tcp") || option("--host") != nil {
  configuration.bindAddress = .hostname(option("--host") ?? "127.0.0.1", port: Int(option("--port") ?? "0") ?? 0)
}
configuration.bearerToken = option("--token")
configuration.allowRemoteAccess = flag("--allow-remote")
if let seconds = option("--head-timeout").flatMap(Int.init) { configuration.requestHeadTimeout = .seconds(seconds) }
if let milliseconds = option("--max-duration-ms").flatMap(Int.init) { configuration.maxDuration = .milliseconds(milliseconds) }
if let connections = option("--max-connections").flatMap(Int.init) { configuration.maxConnections = connections }


let named = Atomic<Int>(0)
let hot = Thread {
  nameCurrentThread("testee-hot")
  if flag("--async-worker") { Profiler.setThreadLabels(["worker": "hot"]) }
  named.add(1, ordering: .releasing)
  testeeHotLoop()
}
hot.start()
let blocked = Thread {
  nameCurrentThread("testee-blocked")
  named.add(1, ordering: .releasing)
  let condition = NSCondition()
  condition.lock()
  while true { condition.wait() }
}
blocked.start()

if flag("--alloc-worker") {
  let allocating = Thread {
    nameCurrentThread("testee-alloc")
    named.add(1, ordering: .releasing)
    testeeAllocLoop()
  }
  allocating.start()
}

/// --lock-contention: the shared mutex and the waiter's measured wait (ns).
nonisolated(unsafe) let testeeMutex: UnsafeMutablePointer<pthread_mutex_t> = {
  let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
  pthread_mutex_init(mutex, nil)
  return mutex
}()
let testeeLockWaited = Atomic<UInt64>(0)
let testeeLockRound = Atomic<Int>(0)

func testeeNow() -> UInt64 {
  var now = timespec()
  clock_gettime(CLOCK_MONOTONIC, &now)
  return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
}

@inline(never) func testeeLockHolder(round: Int) {
  pthread_mutex_lock(testeeMutex)
  testeeLockRound.store(round, ordering: .releasing)
  let end = testeeNow() + 3_000_000
  var x: UInt64 = 1
  while testeeNow() < end { x = x &* 6_364_136_223_846_793_005 &+ 1 }
  testeeSink.wrappingAdd(x, ordering: .relaxed)
  pthread_mutex_unlock(testeeMutex)
}

@inline(never) func testeeLockWaiter() {
  let start = testeeNow()
  pthread_mutex_lock(testeeMutex)
  testeeLockWaited.add(testeeNow() - start, ordering: .relaxed)
  pthread_mutex_unlock(testeeMutex)
}

if flag("--lock-contention") {
  Thread {
    nameCurrentThread("testee-holder")
    var round = 0
    while true {
      round += 1
      testeeLockHolder(round: round)
      // The waiter's turn: it asked during the hold.
      while testeeLockRound.load(ordering: .acquiring) != -round { usleep(100) }
      usleep(1000)
    }
  }.start()
  Thread {
    nameCurrentThread("testee-waiter")
    var seen = 0
    while true {
      let round = testeeLockRound.load(ordering: .acquiring)
      guard round > seen else {
        usleep(100)
        continue
      }
      seen = round
      testeeLockWaiter()
      testeeLockRound.store(-round, ordering: .releasing)
    }
  }.start()
}

if let rate = option("--leak-worker").flatMap(Int.init) {
  let leaking = Thread {
    nameCurrentThread("testee-leak")
    testeeLeakLoop(bytesPerSecond: rate)
  }
  leaking.start()
}

while named.load(ordering: .acquiring) < (flag("--alloc-worker") ? 3 : 2) { usleep(1_000) }

// MARK: Hostile conditions

let unblockRequested = Atomic<Bool>(false)
if flag("--sigprof-blocker") {
  let ready = Atomic<Bool>(false)
  let blocker = Thread {
    nameCurrentThread("testee-sigblock")
    var set = sigset_t()
    sigemptyset(&set)
    sigaddset(&set, SIGPROF)
    pthread_sigmask(SIG_BLOCK, &set, nil)
    ready.store(true, ordering: .releasing)
    // Not 10 ms: that is the loop of the drain thread, which reads this
    // thread's kernel state; under load (two `yes` on 2 cores) 3 of 30 wall
    // profiles had samples that found it runnable with a 10 ms loop, none
    // of 30 with 37 ms.
    while !unblockRequested.load(ordering: .acquiring) { usleep(37_000) }
    pthread_sigmask(SIG_UNBLOCK, &set, nil)  // a pending SIGPROF is delivered here
    while true { usleep(100_000) }
  }
  blocker.start()
  while !ready.load(ordering: .acquiring) { usleep(1_000) }
}

var fifoStatus: String? = nil
/// glibc's, not exported by the Glibc module (_GNU_SOURCE).
@_silgen_name("sched_setaffinity")
func testeeSetAffinity(_ pid: pid_t, _ size: Int, _ set: UnsafeRawPointer) -> Int32

/// Pins the calling thread to CPU 0 (a 1024-bit cpu_set_t with bit 0 set).
func pinToFirstCPU() {
  var set = [UInt64](repeating: 0, count: 16)
  set[0] = 1
  _ = set.withUnsafeBytes { testeeSetAffinity(0, $0.count, $0.baseAddress!) }
}
if let count = option("--fifo-spinners").flatMap(Int.init) {
  // All on CPU 0, with a normal thread `testee-starved` pinned there too: it
  // runs only in the scheduler's RT-throttling windows (50 ms a second), so
  // the wall ticker's signals to it stay pending for up to ~1 s. The rest of
  // the process (server, sampler) keeps the other CPUs.
  let started = Atomic<Int>(0)
  let denied = Atomic<Int32>(0)
  for index in 0..<count {
    let spinner = Thread {
      nameCurrentThread("testee-fifo-\(index)")
      // Real-time first, counted, and only then onto CPU 0: a FIFO thread
      // queued behind another spinner of the same priority never runs again
      // (FIFO does not time-slice), so it must not have anything left to do.
      var parameters = sched_param(sched_priority: 1)
      let result = pthread_setschedparam(pthread_self(), SCHED_FIFO, &parameters)
      if result != 0 { denied.store(result, ordering: .relaxed) }
      started.add(1, ordering: .releasing)
      pinToFirstCPU()
      // Bounded: a test that goes wrong must not starve the machine for long.
      let end = DispatchTime.now().uptimeNanoseconds + 60_000_000_000
      var x: UInt64 = 1
      while DispatchTime.now().uptimeNanoseconds < end {
        for _ in 0..<1_000_000 { x = x &* 6_364_136_223_846_793_005 &+ 1 }
        testeeSink.wrappingAdd(x, ordering: .relaxed)
      }
    }
    spinner.start()
  }
  let starved = Thread {
    nameCurrentThread("testee-starved")
    pinToFirstCPU()
    started.add(1, ordering: .releasing)
    testeeHotLoop()
  }
  starved.start()
  while started.load(ordering: .acquiring) < count + 1 { usleep(1_000) }
  let error = denied.load(ordering: .relaxed)
  fifoStatus = error == 0 ? "FIFO ok" : "FIFO denied \(error)"
}

let pluginLoops = Atomic<Int>(0)
if let path = option("--plugin") {
  let plugin = Thread {
    nameCurrentThread("testee-plugin")
    while true {
      guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL) else {
        usleep(10_000)
        continue
      }
      if let symbol = dlsym(handle, "plugin_work") {
        let work = unsafeBitCast(symbol, to: (@convention(c) (Int32) -> UInt64).self)
        testeeSink.wrappingAdd(work(2), ordering: .relaxed)
      }
      dlclose(handle)
      pluginLoops.add(1, ordering: .relaxed)
    }
  }
  plugin.start()
}

/// Calls per app handler (1...3), each a different function.
let handlerCalls1 = Atomic<Int>(0)
let handlerCalls2 = Atomic<Int>(0)
let handlerCalls3 = Atomic<Int>(0)
func testeeHandler1(_ signal: Int32) { handlerCalls1.add(1, ordering: .relaxed) }
func testeeHandler2(_ signal: Int32) { handlerCalls2.add(1, ordering: .relaxed) }
func testeeHandler3(_ signal: Int32) { handlerCalls3.add(1, ordering: .relaxed) }
func installAppHandler(_ number: Int) {
  var action = sigaction()
  let handlers: [@convention(c) (Int32) -> Void] = [testeeHandler1, testeeHandler2, testeeHandler3]
  action.__sigaction_handler.sa_handler = handlers[number - 1]
  sigemptyset(&action.sa_mask)
  action.sa_flags = SA_RESTART
  sigaction(SIGPROF, &action, nil)
}
if flag("--app-handler") { installAppHandler(1) }

/// glibc's, not exported by the Glibc module (_GNU_SOURCE).
@_silgen_name("pthread_getattr_np")
func testeeGetAttributes(_ thread: pthread_t, _ attributes: UnsafeMutablePointer<pthread_attr_t>) -> Int32

@inline(never) func testeeDeepSpin(_ headroom: Int, _ low: UInt) -> UInt64 {
  var marker: UInt8 = 0
  let here = withUnsafeMutablePointer(to: &marker) { UInt(bitPattern: $0) }
  if here - low > UInt(headroom) + 1024 {
    return testeeDeepSpin(headroom, low) &+ 1  // not a tail call
  }
  while true { testeeHotInner() }
}
if let headroom = option("--small-stack").flatMap(Int.init) {
  let deep = Thread {
    nameCurrentThread("testee-deep")
    var attributes = pthread_attr_t()
    _ = testeeGetAttributes(pthread_self(), &attributes)
    var stack: UnsafeMutableRawPointer? = nil
    var size = 0
    pthread_attr_getstack(&attributes, &stack, &size)
    pthread_attr_destroy(&attributes)
    testeeSink.wrappingAdd(testeeDeepSpin(headroom, UInt(bitPattern: stack)), ordering: .relaxed)
  }
  deep.stackSize = 64 * 1024
  deep.start()
}

let server: ProfileServer
do {
  var logger = Logger(label: "app-profiler")
  logger.logLevel = .warning  // the tests make hundreds of requests
  server = try await ProfileServer.start(configuration: configuration, logger: logger)
} catch {
  print("ERROR \(error)")
  fflush(nil)
  exit(3)
}
if let count = option("--park-threads").flatMap(Int.init) {
  let parked = Atomic<Int>(0)
  for _ in 0..<count {
    let thread = Thread {
      let semaphore = DispatchSemaphore(value: 0)
      parked.add(1, ordering: .releasing)
      semaphore.wait()
    }
    thread.stackSize = 256 * 1024
    thread.start()
  }
  while parked.load(ordering: .acquiring) < count { usleep(1_000) }
}

@inline(never) func testeeAsyncBurn() {
  var x: UInt64 = testeeSink.load(ordering: .relaxed) | 1
  for i in 0..<200_000 { x = x &* 6_364_136_223_846_793_005 &+ UInt64(i) }
  testeeSink.wrappingAdd(x, ordering: .relaxed)
}

@inline(never) func testeeAsyncInner() async {
  while true {
    await Task.yield()
    testeeAsyncBurn()
  }
}

@inline(never) func testeeAsyncMiddle() async {
  await testeeAsyncInner()
}

@inline(never) func testeeAsyncOuter() async {
  await testeeAsyncMiddle()
}

if flag("--async-worker") {
  Task.detached { await Profiler.withLabels(["worker": "async"]) { await testeeAsyncOuter() } }
}

print("READY \(server.address.map { $0.socketPath ?? $0.url } ?? "disabled")")
if let fifoStatus { print(fifoStatus) }
fflush(nil)

/// Tasks of --block-pool that have reached their semaphore.
let poolTasksWaiting = Atomic<Int>(0)

@inline(never) func testeePoolWait() {
  let semaphore = DispatchSemaphore(value: 0)
  poolTasksWaiting.add(1, ordering: .releasing)
  semaphore.wait()  // forever: this pool thread is gone
}

/// Continuations of --park-tasks (never resumed: the tasks stay parked).
let parkedContinuations = Mutex<[CheckedContinuation<Void, Never>]>([])

@inline(never) func testeeParkedWait() async {
  await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
    parkedContinuations.withLock { $0.append(continuation) }
  }
}
@inline(never) func testeeParkedRequest(_ index: Int) async {
  await testeeParkedWait()
  testeeSink.wrappingAdd(UInt64(index), ordering: .relaxed)
}
@inline(never) func testeeSleeper() async { try? await Task.sleep(for: .seconds(3600)) }
@inline(never) func testeeGroupChild() async { await testeeParkedWait() }
@inline(never) func testeeGroupParent() async {
  await withTaskGroup(of: Void.self) { group in
    for _ in 0..<3 { group.addTask { await testeeGroupChild() } }
  }
}
@inline(never) func testeeAsyncLetChild() async { await testeeParkedWait() }
@inline(never) func testeeAsyncLetParent() async {
  async let child: Void = testeeAsyncLetChild()
  await child
}
actor TesteeGate {
  @inline(never) func hold() async { await testeeParkedWait() }
}
let testeeGate = TesteeGate()

if let count = option("--park-tasks").flatMap(Int.init) {
  // Detached: top-level code is on the main actor, whose thread waits below.
  for index in 0..<count { Task.detached { await testeeParkedRequest(index) } }
  for _ in 0..<4 { Task.detached { await testeeSleeper() } }
  Task.detached { await testeeGroupParent() }
  Task.detached { await testeeAsyncLetParent() }
  Task.detached { await testeeGate.hold() }
  // count + 3 group children + async-let child + actor call wait on a continuation.
  while parkedContinuations.withLock({ $0.count }) < count + 5 { usleep(1_000) }
  usleep(100_000)
  print("PARKED \(count + 4 + 1 + 3 + 1 + 1 + 1)")
  fflush(nil)
}

if flag("--block-pool") {
  let width = ProcessInfo.processInfo.activeProcessorCount
  for _ in 0..<(2 * width) {
    Task.detached { testeePoolWait() }
  }
  // Only as many run as the pool has threads; the rest wait in its queue.
  while poolTasksWaiting.load(ordering: .acquiring) < width { usleep(1_000) }
  usleep(100_000)
  print("POOL-BLOCKED \(poolTasksWaiting.load(ordering: .acquiring))")
  fflush(nil)
}

if flag("--fork-child") {
  let child = fork()
  if child == 0 {
    print("CHILD \(getpid())")
    fflush(nil)
    exit(0)  // runs atexit handlers in the child
  }
  var status: Int32 = 0
  waitpid(child, &status, 0)
  print("CHILD-EXITED")
  fflush(nil)
}

// Serve (and answer commands) until the test closes our stdin.
while let line = readLine() {
  let words = line.split(separator: " ")
  switch words.first {
  case "UNBLOCK":
    unblockRequested.store(true, ordering: .releasing)
    usleep(100_000)
    print("UNBLOCKED")
  case "HANDLER":
    let number = words.count > 1 ? Int(words[1]) ?? 1 : 1
    installAppHandler(min(max(number, 1), 3))
    print("HANDLER \(number)")
  case "RAISE":
    kill(getpid(), SIGPROF)
    usleep(200_000)
    let counts = [handlerCalls1.load(ordering: .relaxed), handlerCalls2.load(ordering: .relaxed), handlerCalls3.load(ordering: .relaxed)]
    print("COUNTS \(counts.map(String.init).joined(separator: " "))")
  case "PLUGIN":
    print("PLUGIN \(pluginLoops.load(ordering: .relaxed))")
  case "PING":
    print("PONG")
  case "LOCKWAIT":
    print("LOCKWAIT \(testeeLockWaited.load(ordering: .relaxed))")
  default:
    print("UNKNOWN \(line)")
  }
  fflush(nil)
}
if !flag("--no-stop") && !flag("--block-pool") {
  await server.stop()
}
exit(0)
