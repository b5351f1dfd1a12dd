@testable import AppProfiler
import Testing

/// The lifecycle without signals or threads.
@Suite struct SessionStateMachineTests {
  @Test func happyPath() throws {
    var machine = SessionStateMachine()
    let id = try machine.start().get()
    #expect(machine.state == .arming(id: id))
    try machine.armed(id).get()
    #expect(machine.state == .running(id: id))
    let stopped = machine.stop(id)
    #expect(stopped)
    #expect(machine.state == .draining(id: id))
    machine.finished(id)
    #expect(machine.isIdle)
  }

  @Test func busyWhileAnyStateButIdle() throws {
    var machine = SessionStateMachine()
    let id = try machine.start().get()
    #expect(isBusy(machine.start()))
    try machine.armed(id).get()
    #expect(isBusy(machine.start()))
    _ = machine.stop(id)
    #expect(isBusy(machine.start()))
    machine.finished(id)
    #expect(try machine.start().get() == id + 1)
  }

  @Test func failedArmingFreesTheSlot() throws {
    var machine = SessionStateMachine()
    let id = try machine.start().get()
    machine.failed(id)
    #expect(machine.isIdle)
  }

  @Test func staleIDsAreIgnored() throws {
    var machine = SessionStateMachine()
    let first = try machine.start().get()
    try machine.armed(first).get()
    _ = machine.stop(first)
    machine.finished(first)
    let second = try machine.start().get()
    let armedStale: Bool
    if case .failure(.notCurrent) = machine.armed(first) { armedStale = true } else { armedStale = false }
    #expect(armedStale)
    let stoppedStale = machine.stop(first)
    #expect(!stoppedStale)
    machine.finished(first)
    #expect(machine.state == .arming(id: second))
  }
}

private func isBusy(_ result: Result<UInt64, SessionStateMachine.Failure>) -> Bool {
  if case .failure(.busy) = result { return true }
  return false
}
