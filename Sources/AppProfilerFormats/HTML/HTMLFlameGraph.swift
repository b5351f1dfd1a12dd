/// A self-contained HTML flame graph: one page, inline CSS and JavaScript,
/// no network access, works from `file://`.
///
/// The page reads speedscope JSON (the same document ``SpeedscopeEncoder``
/// writes), so one viewer serves both a saved profile (embedded in the page)
/// and the server's live page at `/` (fetched from `/profile`). It draws an
/// icicle graph (root on top) from DOM blocks, one per frame wider than 0.1 %,
/// with hover details, click-to-zoom, search, a thread selector ("all
/// threads" or one), a label selector (samples with one `key=value`, from
/// `x-app-profiler.labels`; `#label=key=value` in the URL preselects it)
/// and an idle filter for wall profiles (samples ending in an `[idle]` frame). A weight switch offers every sample type of the
/// profile (bytes or objects for alloc, time or samples for cpu/wall), from
/// the `x-app-profiler.values` our speedscope encoder writes. The profile
/// server builds its live page at `/` from the same viewer (``page(title:embeddedSpeedscope:headerHTML:extraHTML:extraScript:)``)
/// with a record form of its own.
public struct HTMLFlameGraphEncoder: Sendable {
  public var title: String?

  public init(title: String? = nil) {
    self.title = title
  }

  /// A page with the profile embedded.
  public func encode(_ profile: Profile) -> [UInt8] {
    let json = SpeedscopeEncoder(name: title).encode(profile)
    return Self.page(
      title: title ?? "\(profile.mode.rawValue) profile — swift-app-profiler", embeddedSpeedscope: json)
  }

  /// Not one of our pages: no embedded profile.
  public struct NotAProfilePage: Error, CustomStringConvertible, Sendable {
    public var description: String { "not an app-profiler HTML page (no embedded profile)" }
  }

  /// The speedscope document embedded in one of our pages (what `encode`
  /// wrote, `</` escaped as `<\/`), for reading a saved page back.
  public static func embeddedProfile(_ page: [UInt8]) throws -> [UInt8] {
    func find(_ needle: [UInt8], from start: Int) -> Int? {
      guard needle.count <= page.count else { return nil }
      var index = start
      while index + needle.count <= page.count {
        if page[index] == needle[0] && Array(page[index..<index + needle.count]) == needle { return index }
        index += 1
      }
      return nil
    }
    let open = Array("<script type=\"application/json\" id=\"profile-data\">".utf8)
    guard let start = find(open, from: 0), let end = find(Array("</script>".utf8), from: start + open.count)
    else { throw NotAProfilePage() }
    var json: [UInt8] = []
    json.reserveCapacity(end - start - open.count)
    var index = start + open.count
    while index < end {
      // Undo the escape of "</" as "<\/".
      if page[index] == UInt8(ascii: "<") && index + 2 < end && page[index + 1] == UInt8(ascii: "\\")
        && page[index + 2] == UInt8(ascii: "/")
      {
        json += [UInt8(ascii: "<"), UInt8(ascii: "/")]
        index += 3
      } else {
        json.append(page[index])
        index += 1
      }
    }
    return json
  }

  /// The viewer page. With `embeddedSpeedscope`, it shows that profile.
  /// `headerHTML` goes into the header above the viewer's controls,
  /// `extraHTML` below them, and `extraScript` runs inside the viewer's
  /// script, where `show(speedscopeDocument)` draws a profile (the server's
  /// live page adds its record form this way).
  public static func page(
    title: String, embeddedSpeedscope: [UInt8]?, headerHTML: String = "", extraHTML: String = "", extraScript: String = ""
  ) -> [UInt8] {
    var html = """
      <!DOCTYPE html>
      <html lang="en"><head><meta charset="utf-8">
      <meta name="viewport" content="width=device-width, initial-scale=1">
      <title>\(escape(title))</title>
      <style>\(css)</style></head>
      <body>
      <header><h1>\(escape(title))</h1>
      """
    html += headerHTML
    html += """
      <div id="controls">
      <label>thread <select id="thread"></select></label>
      <label id="labelLabel" hidden>label <select id="label"></select></label>
      <label><input type="checkbox" id="hideIdle"> hide idle</label>
      <label id="offThreadLabel" hidden>tasks off threads <select id="offThread"><option value="show">shown</option><option value="hide">hidden</option><option value="only">only</option></select></label>
      <label id="weightLabel" hidden>weight <select id="weight"></select></label>
      <label>search <input id="search" placeholder="function name"></label>
      <button id="reset">reset zoom</button>
      <span id="matched"></span>
      </div></header>
      \(extraHTML)
      <div id="details">Hover a frame for details; click to zoom.</div>
      <div id="graph"></div>

      """
    var bytes = Array(html.utf8)
    bytes += Array("<script type=\"application/json\" id=\"profile-data\">".utf8)
    if let embeddedSpeedscope {
      // "</" inside JSON strings would end the script element early.
      var previous: UInt8 = 0
      for byte in embeddedSpeedscope {
        if previous == UInt8(ascii: "<") && byte == UInt8(ascii: "/") { bytes.append(UInt8(ascii: "\\")) }
        bytes.append(byte)
        previous = byte
      }
    } else {
      bytes += Array("null".utf8)
    }
    let viewer = script.replacingFirst("/*EXTRA*/", with: extraScript)
    bytes += Array("</script>\n<script>\(viewer)</script>\n</body></html>\n".utf8)
    return bytes
  }

  /// Escapes text for HTML content and attribute values.
  public static func escape(_ text: String) -> String {
    var result = ""
    for character in text {
      switch character {
      case "<": result += "&lt;"
      case ">": result += "&gt;"
      case "&": result += "&amp;"
      case "\"": result += "&quot;"
      default: result.append(character)
      }
    }
    return result
  }

  static let css = """
    body{font:13px -apple-system,system-ui,sans-serif;margin:0;color:#222}
    header{padding:8px 12px;background:#f4f4f4;border-bottom:1px solid #ddd}
    h1{font-size:15px;margin:0 0 6px}
    form,#controls{display:flex;gap:14px;align-items:center;flex-wrap:wrap;margin:4px 0}
    #details{padding:6px 12px;font-family:ui-monospace,monospace;white-space:nowrap;overflow:hidden;text-overflow:ellipsis;border-bottom:1px solid #eee;min-height:16px}
    #graph{position:relative;margin:4px 12px}
    .frame{position:absolute;height:17px;line-height:17px;font-size:11px;overflow:hidden;white-space:nowrap;text-overflow:ellipsis;box-sizing:border-box;border:1px solid #fff;border-width:0 1px 1px 0;padding-left:3px;cursor:pointer;border-radius:2px}
    .frame:hover{filter:brightness(0.9)}
    .frame.match{background:#d946ef !important;color:#fff}
    .frame.dim{opacity:.45}
    #error{color:#b00;padding:8px 12px}
    """

  static let script = #"""
    "use strict";
    (function () {
      const ROW = 18, MIN_FRACTION = 0.001;
      const graph = document.getElementById("graph");
      const details = document.getElementById("details");
      const threadSelect = document.getElementById("thread");
      const hideIdle = document.getElementById("hideIdle");
      // Task wall profiles: samples of tasks on no thread end in a marker
      // ([suspended: …], [enqueued]); they can be hidden or kept alone.
      const offThread = document.getElementById("offThread");
      const offThreadLabel = document.getElementById("offThreadLabel");
      function isOffThread(name) { return name.startsWith("[suspended") || name === "[enqueued]"; }
      const search = document.getElementById("search");
      const matched = document.getElementById("matched");
      const weightSelect = document.getElementById("weight");
      const weightLabel = document.getElementById("weightLabel");
      const labelSelect = document.getElementById("label");
      const labelLabel = document.getElementById("labelLabel");
      let file = null, root = null, zoom = null, unit = "nanoseconds", unitName = "";

      function format(value) {
        if (unit === "bytes") {
          const units = ["B", "KiB", "MiB", "GiB"]; let i = 0;
          while (value >= 1024 && i < units.length - 1) { value /= 1024; i++; }
          return value.toFixed(i ? 1 : 0) + " " + units[i];
        }
        if (unit === "nanoseconds") {
          if (value >= 1e9) return (value / 1e9).toFixed(2) + " s";
          if (value >= 1e6) return (value / 1e6).toFixed(1) + " ms";
          return (value / 1e3).toFixed(0) + " µs";
        }
        if (unit === "count") return Math.round(value).toLocaleString("en-US") + " " + unitName;
        return String(value);
      }

      // The label of a block: the function without its module, argument
      // labels' types and result type ("Module.Type.f(x: Swift.Int) -> Swift.Int"
      // shows as "Type.f(x:)"); hover and search use the full name.
      function shortName(name) {
        // The rule of ShortNames.swift (app-profiler top --names short).
        if (name.startsWith("[") || name.includes("+0x")) return name;
        // "(Name in _3F1A…)" is a private declaration's discriminator.
        const text = name.replace(/\(([\w$]+) in _[0-9A-F]+\)/g, "$1");
        function dropModule(head) {
          const dot = head.indexOf(".");
          return dot > 0 && !head.includes(" ") ? head.slice(dot + 1) : head;
        }
        const open = text.indexOf("(");
        if (open < 0) return dropModule(text);
        const head = text.slice(0, open);
        // Closures, specializations, thunks: the whole name is the information.
        if (head.includes(" ")) return text;
        // The argument list up to its matching ")"; effects and result go.
        let depth = 0, close = -1;
        for (let i = open; i < text.length && close < 0; i++) {
          const c = text[i];
          if (c === "(" || c === "<" || c === "[") depth++;
          else if (c === ")" || c === ">" || c === "]") { depth--; if (depth === 0 && c === ")") close = i; }
        }
        if (close < 0) return dropModule(text);
        let args = text.slice(open, close + 1);
        if (args.length > 2) {
          // Labels only, as Swift writes a function's name: "(x: Swift.Int, Swift.Int)" -> "(x:_:)".
          const parts = []; let level = 0, start = 1;
          for (let i = 1; i < args.length - 1; i++) {
            const c = args[i];
            if (c === "(" || c === "<" || c === "[") level++;
            else if (c === ")" || c === ">" || c === "]") level--;
            else if (c === "," && level === 0) { parts.push(args.slice(start, i)); start = i + 1; }
          }
          parts.push(args.slice(start, args.length - 1));
          args = "(" + parts.map(function (p) {
            const m = p.trim().match(/^([A-Za-z_][\w]*)\s*:\s/);
            return (m ? m[1] : "_") + ":";
          }).join("") + ")";
        }
        return dropModule(head) + args;
      }

      function color(name) {
        if (name.startsWith("[")) return "#c8c8c8";
        let h = 0;
        for (let i = 0; i < name.length; i++) h = (h * 31 + name.charCodeAt(i)) >>> 0;
        return "hsl(" + (10 + h % 45) + "," + (60 + h % 30) + "%," + (58 + h % 12) + "%)";
      }

      function node(name) { return { name: name, total: 0, self: 0, children: new Map() }; }

      function build() {
        const frames = file.shared.frames;
        const chosen = threadSelect.value;
        const extension = file["x-app-profiler"] || {};
        // The default sample type is the profiles' weights; the others are
        // in x-app-profiler.values, one array per profile.
        const other = weightSelect.value && extension.values ? extension.values[weightSelect.value] : null;
        const otherType = other ? (extension.sampleTypes || []).find(function (t) { return t.type === weightSelect.value; }) : null;
        // "key=value": only samples whose label set has it.
        const labels = extension.labels || null;
        const wanted = labelSelect.value;
        const cut = wanted.indexOf("=");
        const wantedKey = wanted.slice(0, cut), wantedValue = wanted.slice(cut + 1);
        root = node("all");
        file.profiles.forEach(function (profile, index) {
          if (chosen !== "all" && String(index) !== chosen) return;
          const sampleLabels = labels && labels.samples[index] ? labels.samples[index] : null;
          unit = otherType ? otherType.unit : profile.unit;
          unitName = otherType ? otherType.type : "";
          const weights = other && other[index] ? other[index] : profile.weights;
          for (let s = 0; s < profile.samples.length; s++) {
            const stack = profile.samples[s], weight = weights[s];
            if (hideIdle.checked && stack.length && frames[stack[stack.length - 1]].name === "[idle]") continue;
            if (offThread.value !== "show") {
              const waiting = stack.length > 0 && isOffThread(frames[stack[stack.length - 1]].name);
              if (waiting === (offThread.value === "hide")) continue;
            }
            if (wanted) {
              const set = sampleLabels ? labels.sets[sampleLabels[s]] || {} : {};
              if (set[wantedKey] !== wantedValue) continue;
            }
            let current = root;
            current.total += weight;
            for (const index of stack) {
              const name = frames[index].name;
              let child = current.children.get(name);
              if (!child) { child = node(name); current.children.set(name, child); }
              child.total += weight;
              current = child;
            }
            current.self += weight;
          }
        });
        zoom = root;
        render();
      }

      function render() {
        graph.textContent = "";
        const width = graph.clientWidth || 1000;
        const base = zoom.total || 1;
        const query = search.value.trim().toLowerCase();
        let maxDepth = 0, matchedTotal = 0;
        function matchedIn(n) {
          if (n.name.toLowerCase().includes(query)) return n.total;
          let sum = 0; n.children.forEach(function (c) { sum += matchedIn(c); }); return sum;
        }
        function place(n, depth, x) {
          const w = n.total / base;
          if (w < MIN_FRACTION) return;
          maxDepth = Math.max(maxDepth, depth);
          const block = document.createElement("div");
          block.className = "frame";
          block.style.left = (x * width) + "px";
          block.style.top = (depth * ROW) + "px";
          block.style.width = Math.max(w * width, 1) + "px";
          block.style.background = color(n.name);
          block.textContent = shortName(n.name);
          block.dataset.name = n.name;
          block.title = n.name;
          if (query) block.classList.add(n.name.toLowerCase().includes(query) ? "match" : "dim");
          block.addEventListener("mouseenter", function () {
            details.textContent = n.name + " — total " + format(n.total) + " (" + (100 * n.total / (root.total || 1)).toFixed(1) +
              "%), self " + format(n.self) + " (" + (100 * n.self / (root.total || 1)).toFixed(1) + "%)";
          });
          block.addEventListener("click", function () { zoom = n; render(); });
          graph.appendChild(block);
          let childX = x;
          const children = Array.from(n.children.values()).sort(function (a, b) { return b.total - a.total; });
          for (const child of children) { place(child, depth + 1, childX); childX += child.total / base; }
        }
        // Keep the path from the root to the zoomed node visible above it.
        const path = [];
        (function find(n, trail) {
          if (n === zoom) { path.push.apply(path, trail); return true; }
          for (const c of n.children.values()) if (find(c, trail.concat([n]))) return true;
          return false;
        })(root, []);
        path.forEach(function (n, depth) {
          const block = document.createElement("div");
          block.className = "frame dim";
          block.style.left = "0px"; block.style.top = (depth * ROW) + "px"; block.style.width = width + "px";
          block.style.background = color(n.name); block.textContent = shortName(n.name); block.dataset.name = n.name;
          block.addEventListener("click", function () { zoom = n; render(); });
          graph.appendChild(block);
        });
        place(zoom, path.length, 0);
        graph.style.height = ((maxDepth + 2) * ROW) + "px";
        if (query) {
          matchedTotal = matchedIn(zoom);
          matched.textContent = "matched " + (100 * matchedTotal / base).toFixed(1) + "%";
        } else {
          matched.textContent = "";
        }
      }

      function show(data) {
        file = data;
        // One choice per sample type: the default first, then the others.
        const extension = data["x-app-profiler"] || {};
        const types = extension.sampleTypes || [];
        const defaultType = types[extension.defaultSampleType || 0];
        weightSelect.textContent = "";
        const first = document.createElement("option");
        first.value = ""; first.textContent = defaultType ? defaultType.type + " (" + defaultType.unit + ")" : "weight";
        weightSelect.appendChild(first);
        Object.keys(extension.values || {}).forEach(function (name) {
          const type = types.find(function (t) { return t.type === name; });
          const option = document.createElement("option");
          option.value = name; option.textContent = name + (type ? " (" + type.unit + ")" : "");
          weightSelect.appendChild(option);
        });
        weightLabel.hidden = weightSelect.options.length < 2;
        // One choice per key=value present, sorted.
        labelSelect.textContent = "";
        const anyLabel = document.createElement("option");
        anyLabel.value = ""; anyLabel.textContent = "all samples";
        labelSelect.appendChild(anyLabel);
        const pairs = new Set();
        ((extension.labels || {}).sets || []).forEach(function (set) {
          Object.keys(set).forEach(function (key) { pairs.add(key + "=" + set[key]); });
        });
        const preselect = new URLSearchParams(location.hash.slice(1)).get("label");
        Array.from(pairs).sort().forEach(function (pair) {
          const option = document.createElement("option");
          option.value = pair; option.textContent = pair;
          if (pair === preselect) option.selected = true;
          labelSelect.appendChild(option);
        });
        labelLabel.hidden = pairs.size === 0;
        offThreadLabel.hidden = !data.shared.frames.some(function (frame) { return isOffThread(frame.name); });
        const offThreadChoice = new URLSearchParams(location.hash.slice(1)).get("tasks");
        if (offThreadChoice === "hide" || offThreadChoice === "only") offThread.value = offThreadChoice;
        threadSelect.textContent = "";
        const all = document.createElement("option");
        all.value = "all"; all.textContent = "all threads";
        threadSelect.appendChild(all);
        data.profiles.forEach(function (profile, index) {
          const option = document.createElement("option");
          option.value = String(index); option.textContent = profile.name;
          threadSelect.appendChild(option);
        });
        build();
      }

      threadSelect.addEventListener("change", build);
      hideIdle.addEventListener("change", build);
      offThread.addEventListener("change", build);
      weightSelect.addEventListener("change", build);
      labelSelect.addEventListener("change", build);
      search.addEventListener("input", render);
      document.getElementById("reset").addEventListener("click", function () { zoom = root; render(); });
      window.addEventListener("resize", function () { if (root) render(); });

      /*EXTRA*/

      const embedded = JSON.parse(document.getElementById("profile-data").textContent);
      if (embedded) show(embedded);
    })();
    """#
}

extension String {
  /// This string with the first `marker` replaced (no Foundation here).
  fileprivate func replacingFirst(_ marker: String, with replacement: String) -> String {
    let characters = Array(self)
    let pattern = Array(marker)
    guard pattern.count <= characters.count else { return self }
    for start in 0...(characters.count - pattern.count) where Array(characters[start..<start + pattern.count]) == pattern {
      return String(characters[..<start]) + replacement + String(characters[(start + pattern.count)...])
    }
    return self
  }
}
