@testable import AppProfilerFormats
import Testing

@Suite struct HTMLTests {
  @Test func embedsTheProfileSafely() {
    var profile = sampleProfile()
    profile.functions[0].name = "</script><script>alert(1)</script>"
    let html = String(decoding: HTMLFlameGraphEncoder(title: "t<1>").encode(profile), as: UTF8.self)
    #expect(html.contains("<title>t&lt;1&gt;</title>"))
    #expect(!html.contains("</script><script>alert(1)"))
    #expect(html.contains(#"<\/script><script>alert(1)<\/script>"#))
    #expect(!html.contains("http://") && !html.contains("https://cdn"), "page must not load anything")
  }
}
