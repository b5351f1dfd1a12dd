import AppProfiler
import CAppProfiler
import Testing

extension SamplingSuite {
  /// docs/signal-safety.md states how much free stack a thread needs to be
  /// sampled; this measures it (kernel signal frame + handler + unwinder).
  @Suite struct StackHeadroom {
    @Test func oneSampleUsesLessThanTheDocumentedHeadroom() async throws {
      for unwinder in [SessionOptions.Unwinder.callFrameInformation, .framePointers] {
        var options = SessionOptions()
        options.unwinder = unwinder
        let session = try Profiler.shared.start(mode: .wall, interval: .milliseconds(500), options: options)
        let used = cap_measure_signal_stack()
        session.cancel()
        print("one \(unwinder) sample used \(used) bytes of the interrupted thread's stack")
        #expect(used > 1024, "the kernel's signal frame alone is larger")
        #expect(used <= 6 * 1024, "docs/signal-safety.md promises 8 KiB of headroom with 2 KiB to spare")
      }
    }
  }
}
