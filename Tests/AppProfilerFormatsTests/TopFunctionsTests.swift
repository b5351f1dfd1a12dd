import AppProfilerFormats
import Testing

@Suite struct TopFunctionsTests {
  @Test func selfAndTotal() {
    let top = TopFunctions(sampleProfile())
    // busy: 3 × [main, handle, inlined], 1 × [main, app+0x300], 3 idle × [main, app+0x300]; quiet: 1 × [main, app+0x300]
    #expect(top.total == 8)
    let byName = Dictionary(uniqueKeysWithValues: top.entries.map { ($0.name, $0) })
    #expect(byName["main"]?.totalCount == 8)
    #expect(byName["main"]?.selfCount == 0)
    #expect(byName["app+0x300"]?.selfCount == 5)
    #expect(byName["inlinedHelper()"]?.selfCount == 3)
    #expect(byName["handle()"]?.totalCount == 3)
    #expect(top.entries.first?.name == "app+0x300")
  }

  @Test func idleExcludedAndThreadFilter() {
    let profile = sampleProfile()
    #expect(TopFunctions(profile, idle: .exclude).total == 5)
    #expect(TopFunctions(profile, thread: 7).total == 1)
    let text = TopFunctions(profile).render(limit: 2)
    #expect(text.split(separator: "\n").count == 3)
    #expect(text.contains(" 62.5%"))
  }
}
