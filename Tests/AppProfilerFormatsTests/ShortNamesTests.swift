import AppProfilerFormats
import Testing

/// Short names for `top --names short` (the HTML viewer's rule).
@Suite struct ShortNamesTests {
  @Test func swiftSignaturesBecomeTheirNames() {
    #expect(ShortNames.short("bars_workload.hiddenHotAlpha() -> Swift.UInt64") == "hiddenHotAlpha()")
    #expect(ShortNames.short("Module.Type.f(x: Swift.Int, Swift.Int) -> Swift.Int") == "Type.f(x:_:)")
    #expect(
      ShortNames.short("Module.Box.store(_: [Swift.String : (Swift.Int, Swift.Int)], into: inout Module.Box) throws -> ()")
        == "Box.store(_:into:)")
    #expect(
      ShortNames.short(
        "AppProfilerHummingbird.ProfilingMiddleware.(profile in _D6A3D88B574ED759B549B4B5761E5C99)(_: HummingbirdCore.Request, context: A) async throws -> HummingbirdCore.Response")
        == "ProfilingMiddleware.profile(_:context:)")
    #expect(ShortNames.short("HummingbirdExample.fnA(milliseconds: Swift.Int) -> Swift.UInt64") == "fnA(milliseconds:)")
  }

  @Test func othersStayAsTheyAre() {
    for name in ["[async]", "[kernel: futex]", "__vdso_clock_gettime", "main", "libc.so.6+0x1234", "swift_retain"] {
      #expect(ShortNames.short(name) == name)
    }
  }

  @Test func topRendersShortNames() {
    var profile = Profile(
      mode: .cpu, engine: "test", sampleTypes: [.init("samples", "count")], defaultSampleType: 0,
      periodType: .init("cpu", "nanoseconds"), period: 1, startTimeNanoseconds: 0, durationNanoseconds: 1)
    profile.functions = [.init(name: "Module.Type.f(x: Swift.Int) -> Swift.Int")]
    profile.locations = [.init(address: 0, mapping: nil, lines: [.init(function: 0)])]
    profile.stacks = [[0]]
    profile.threads = [.init(id: 1, name: "main", samples: [.init(stack: 0, timestampNanoseconds: 0, values: [3])])]
    let top = TopFunctions(profile)
    #expect(top.render(names: .short).contains(" Type.f(x:)"))
    #expect(top.render().contains("Module.Type.f(x: Swift.Int) -> Swift.Int"))
  }
}
