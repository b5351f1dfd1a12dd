@testable import AppProfilerFormats
import Testing

@Suite struct CollapsedTests {
  @Test func goldenAndRoundTrip() throws {
    let text = String(decoding: CollapsedEncoder().encode(sampleProfile()), as: UTF8.self)
    #expect(text == """
      main;app+0x300 2
      main;app+0x300;[idle] 3
      main;handle();inlinedHelper() 3

      """)
    let decoded = try CollapsedDecoder().decode(Array(text.utf8))
    #expect(decoded.totalCount == sampleProfile().totalCount)
    let original = sampleProfile()
    #expect(decoded.busyCount(of: decoded.threads[0]) == original.threads.reduce(Int64(0)) { $0 + original.busyCount(of: $1) })
    let prefixed = String(decoding: CollapsedEncoder(threadPrefix: true).encode(sampleProfile()), as: UTF8.self)
    #expect(prefixed.contains("busy (tid 5);main;handle();inlinedHelper() 3"))
  }

  @Test func namesWithSeparatorsStayParseable() throws {
    var profile = sampleProfile()
    profile.functions[0].name = "a;b\nc d"
    let text = CollapsedEncoder().encode(profile)
    for line in String(decoding: text, as: UTF8.self).split(separator: "\n") {
      #expect(line.split(separator: ";").first == "a:b c d")
    }
    #expect(try CollapsedDecoder().decode(text).totalCount == profile.totalCount)
    #expect(throws: CollapsedDecoder.Invalid.self) { try CollapsedDecoder().decode(Array("a;b x\n".utf8)) }
  }
}
