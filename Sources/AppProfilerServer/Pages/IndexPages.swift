import AppProfiler

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The server's own pages: `/` (status, endpoints, and the flame graph
/// viewer with a form that records a profile from this server and draws it
/// in place) and `/debug/pprof/` (net/http/pprof's index). Both list the
/// route table.
enum IndexPages {
  /// `GET /`. `/#record?mode=cpu&duration=5` records on load.
  static func index(routes: [Route]) -> HTTPResponse {
    var list = "<section id=\"endpoints\"><p>pid \(getpid()) — profiler \(Profiler.shared.isBusy ? "recording" : "idle") — "
    list += "swift-app-profiler \(AppProfilerVersion.current)</p><ul>"
    for route in routes {
      list += "<li><a href=\"\(escape(String(route.example.dropFirst())))\"><code>\(escape(route.path))</code></a> — \(escape(route.summary))</li>"
    }
    list += "</ul></section>"
    let page = HTMLFlameGraphEncoder.page(
      title: "swift-app-profiler: pid \(getpid())", embeddedSpeedscope: nil, headerHTML: recordForm, extraHTML: list,
      extraScript: recordScript)
    return HTTPResponse(status: .ok, headers: [("Content-Type", "text/html; charset=utf-8")], body: page)
  }

  /// `GET /debug/pprof/`: the pprof endpoints, like net/http/pprof's index.
  static func pprofIndex(routes: [Route]) -> HTTPResponse {
    var html = "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>/debug/pprof/</title></head><body>"
    html += "<h1>/debug/pprof/</h1><p>Profiles of pid \(getpid()). Use <code>go tool pprof http://HOST:PORT/debug/pprof/profile?seconds=30</code>.</p><table>"
    for route in routes where route.isPprof && route.path != "/debug/pprof/" {
      let target = escape(String(route.example.dropFirst("/debug/pprof/".count)))
      html += "<tr><td><a href=\"\(target)\">\(escape(route.path))</a></td><td>\(escape(route.summary))</td></tr>"
    }
    html += "</table><p><a href=\"../../\">flame graph viewer</a></p></body></html>\n"
    return HTTPResponse(status: .ok, headers: [("Content-Type", "text/html; charset=utf-8")], body: Array(html.utf8))
  }

  static func escape(_ text: String) -> String { HTMLFlameGraphEncoder.escape(text) }

  /// The record form, in the viewer's header.
  static let recordForm = """
    <form id="record">
    <label>mode <select name="mode"><option>cpu</option><option>wall</option><option>alloc</option><option>heap</option><option>block</option><option>mutex</option></select></label>
    <label>duration <input name="duration" value="5" size="4"> s</label>
    <label>interval <input name="interval" value="1000" size="7"> <span id="intervalUnit">µs</span></label>
    <button type="submit">Record</button> <span id="recording"></span>
    </form>
    """

  /// Records with `/profile` (relative, so it works behind any prefix) and
  /// hands the speedscope answer to the viewer's `show`.
  static let recordScript = #"""
    const form = document.getElementById("record");
    // The interval is µs for cpu/wall, bytes between samples for alloc and
    // heap, the lock sampling rate in ns for block and mutex.
    const units = { alloc: ["bytes", "524288"], heap: ["bytes", "524288"], block: ["ns", "100000"], mutex: ["ns", "100000"] };
    form.elements.mode.addEventListener("change", function () {
      const unit = units[form.elements.mode.value] || ["µs", "1000"];
      document.getElementById("intervalUnit").textContent = unit[0];
      form.elements.interval.value = unit[1];
    });
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      const params = new URLSearchParams(new FormData(form));
      const status = document.getElementById("recording");
      status.textContent = "recording…";
      fetch("profile?" + params.toString()).then(function (response) {
        if (!response.ok) return response.text().then(function (text) { throw new Error(text); });
        return response.json();
      }).then(function (data) { status.textContent = ""; show(data); })
        .catch(function (error) { status.textContent = String(error.message || error); });
    });
    // /#record?mode=cpu&duration=5 fills the form and records at once.
    if (location.hash.startsWith("#record")) {
      const params = new URLSearchParams(location.hash.slice(location.hash.indexOf("?") + 1));
      if (params.get("mode")) { form.elements.mode.value = params.get("mode"); form.elements.mode.dispatchEvent(new Event("change")); }
      params.forEach(function (value, key) { if (form.elements[key]) form.elements[key].value = value; });
      form.requestSubmit();
    }
    """#
}
