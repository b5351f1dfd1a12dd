@testable import AppProfiler
import Testing

/// The sampling slot without signals or threads.
@Suite struct SessionStateMachineTests {
  typealias Machine = SessionStateMachine<String>

  @Test func happyPath() throws {
    var machine = Machine()
    guard case .newRun(let run, let consumer) = try machine.attach("cpu").get() else {
      Issue.record("the first attach did not start a run")
      return
    }
    #expect(machine.state == .arming(run: run, key: "cpu", consumer: consumer))
    try machine.armed(run).get()
    #expect(machine.state == .running(run: run, key: "cpu", consumers: [consumer]))
    #expect(machine.detach(consumer) == .last(run: run))
    #expect(machine.state == .draining(run: run))
    machine.finished(run)
    #expect(machine.isIdle)
  }

  @Test func sameKeyJoinsOtherKeyIsBusy() throws {
    var machine = Machine()
    guard case .newRun(let run, let first) = try machine.attach("cpu").get() else { return }
    // While arming, nobody joins (the profiler holds its lock meanwhile).
    #expect(isBusy(machine.attach("cpu")))
    try machine.armed(run).get()
    #expect(isBusy(machine.attach("wall")))
    guard case .joined(run, let second) = try machine.attach("cpu").get() else {
      Issue.record("a second cpu consumer did not join")
      return
    }
    #expect(machine.consumerCount == 2)
    #expect(machine.detach(first) == .others(run: run))
    #expect(machine.detach(first) == .notAttached)
    #expect(machine.detach(second) == .last(run: run))
    #expect(isBusy(machine.attach("cpu")))  // draining
    machine.finished(run)
    guard case .newRun(let next, _) = try machine.attach("wall").get() else { return }
    #expect(next > run)
  }

  @Test func consumersAreBounded() throws {
    var machine = Machine()
    guard case .newRun(let run, _) = try machine.attach("cpu").get() else { return }
    try machine.armed(run).get()
    for _ in 1..<Machine.maximumConsumers { _ = try machine.attach("cpu").get() }
    #expect(machine.consumerCount == Machine.maximumConsumers)
    #expect(isBusy(machine.attach("cpu")))
  }

  @Test func failedArmingFreesTheSlot() throws {
    var machine = Machine()
    guard case .newRun(let run, _) = try machine.attach("cpu").get() else { return }
    machine.failed(run)
    #expect(machine.isIdle)
  }

  @Test func staleIDsAreIgnored() throws {
    var machine = Machine()
    guard case .newRun(let first, let consumer) = try machine.attach("cpu").get() else { return }
    try machine.armed(first).get()
    _ = machine.detach(consumer)
    machine.finished(first)
    guard case .newRun(let second, let secondConsumer) = try machine.attach("cpu").get() else { return }
    let armedStale: Bool
    if case .failure(.notCurrent) = machine.armed(first) { armedStale = true } else { armedStale = false }
    #expect(armedStale)
    #expect(machine.detach(consumer) == .notAttached)
    machine.finished(first)
    #expect(machine.state == .arming(run: second, key: "cpu", consumer: secondConsumer))
  }
}

private func isBusy(_ result: Result<Machine.Attachment, Machine.Failure>) -> Bool {
  if case .failure(.busy) = result { return true }
  return false
}

private typealias Machine = SessionStateMachine<String>
