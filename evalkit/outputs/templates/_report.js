/* evalkit report: the per-example tables.
 * Reads the JSON in #page-data and renders one page of rows at a time, so a run of
 * 10,000 examples x 4 variants stays responsive. Every piece of data reaches the page
 * through textContent: never as markup. Flag bits are kept in step with _samples.py.
 */
(function () {
  "use strict";
  var REGRESSED = 1, RIGHT_TO_WRONG = 4, WRONG_TO_RIGHT = 8, JUDGE_ERROR = 16, CHANGED = 32;
  var MASKS = { all: 0, changed: CHANGED, regressed: REGRESSED, r2w: RIGHT_TO_WRONG,
                w2r: WRONG_TO_RIGHT, judge: JUDGE_ERROR };
  var PAGE = 25, DIFF_CELLS = 2000000;
  var ID = 0, PROMPT = 1, REF = 2, OUTS = 3, SCORES = 4, FLAGS = 5, JUDG = 6;
  var data, variants, baseIdx;

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    return e;
  }

  function fmt(x) {
    if (x === null || x === undefined) { return "\u2014"; }
    if (typeof x !== "number") { return String(x); }
    if (Number.isInteger(x)) { return String(x); }
    var a = Math.abs(x);
    if (a >= 100) { return x.toFixed(1); }
    if (a >= 1) { return x.toFixed(2); }
    return x.toFixed(3);
  }

  /* Word-level diff (LCS over words with their trailing space): [op, text] pairs, op 0 kept,
   * 1 added in b, -1 removed from a. null when the texts are too long to diff here. */
  function words(s) { return s.match(/\S+\s*|\s+/g) || []; }
  function diff(aText, bText) {
    var a = words(aText), b = words(bText), pre = 0, suf = 0, out = [], i, j;
    while (pre < a.length && pre < b.length && a[pre].trim() === b[pre].trim()) { pre++; }
    while (suf < a.length - pre && suf < b.length - pre &&
           a[a.length - 1 - suf].trim() === b[b.length - 1 - suf].trim()) { suf++; }
    var A = a.slice(pre, a.length - suf), B = b.slice(pre, b.length - suf);
    var n = A.length, m = B.length;
    if ((n + 1) * (m + 1) > DIFF_CELLS) { return null; }
    var L = new Int32Array((n + 1) * (m + 1));
    for (i = n - 1; i >= 0; i--) {
      for (j = m - 1; j >= 0; j--) {
        L[i * (m + 1) + j] = A[i].trim() === B[j].trim() ? L[(i + 1) * (m + 1) + j + 1] + 1
          : Math.max(L[(i + 1) * (m + 1) + j], L[i * (m + 1) + j + 1]);
      }
    }
    if (pre) { out.push([0, b.slice(0, pre).join("")]); }
    i = 0; j = 0;
    while (i < n || j < m) {
      if (i < n && j < m && A[i].trim() === B[j].trim()) { out.push([0, B[j]]); i++; j++; }
      else if (j < m && (i === n || L[i * (m + 1) + j + 1] >= L[(i + 1) * (m + 1) + j])) {
        out.push([1, B[j]]); j++;
      } else { out.push([-1, A[i]]); i++; }
    }
    if (suf) { out.push([0, b.slice(b.length - suf).join("")]); }
    return out;
  }

  function diffPre(baseText, text) {
    var pre = el("pre", "out");
    var parts = (baseText === null || text === null) ? null : diff(baseText, text);
    if (parts === null) { pre.textContent = text; return pre; }
    parts.forEach(function (p) {
      pre.appendChild(p[0] === 0 ? document.createTextNode(p[1])
        : el(p[0] > 0 ? "ins" : "del", null, p[1]));
    });
    return pre;
  }

  function Table(root, task) {
    this.root = root;
    this.task = task;
    this.rows = task.rows;
    this.metrics = task.metrics;
    this.hay = null;
    this.show = "all"; this.variant = -1; this.metric = 0; this.needle = "";
    this.sortKey = null; this.sortDir = 1; this.page = 0;
    this.open = {};
    this.q = function (cls) { return root.querySelector("." + cls); };
    this.setup();
    this.apply();
  }

  Table.prototype.setup = function () {
    var self = this, sel = this.q("f-metric"), timer = null;
    this.metrics.forEach(function (m, k) {
      var o = el("option", null, m.label + (m.binary ? " (0/1)" : ""));
      o.value = String(k);
      sel.appendChild(o);
    });
    sel.addEventListener("change", function () { self.metric = Number(sel.value); self.apply(); });
    this.q("f-show").addEventListener("change", function (e) {
      self.show = e.target.value; self.page = 0; self.apply();
    });
    this.q("f-variant").addEventListener("change", function (e) {
      self.variant = Number(e.target.value); self.page = 0; self.apply();
    });
    this.q("f-search").addEventListener("input", function (e) {
      clearTimeout(timer);
      timer = setTimeout(function () {
        self.needle = e.target.value.trim().toLowerCase(); self.page = 0; self.apply();
      }, 120);
    });
    this.q("f-prev").addEventListener("click", function () { self.page--; self.render(); });
    this.q("f-next").addEventListener("click", function () { self.page++; self.render(); });
  };

  Table.prototype.haystack = function (i) {
    if (!this.hay) { this.hay = new Array(this.rows.length); }
    if (this.hay[i] === undefined) {
      var r = this.rows[i], parts = [r[ID], r[PROMPT], r[REF] || ""].concat(r[OUTS]);
      (r[JUDG] || []).forEach(function (js) {
        js.forEach(function (j) { if (j) { parts.push(j[1] || "", j[2] || ""); } });
      });
      this.hay[i] = parts.join("\n").toLowerCase();
    }
    return this.hay[i];
  };

  Table.prototype.value = function (r, v) {
    var x = r[SCORES][v][this.metric];
    return x === undefined ? null : x;
  };

  Table.prototype.apply = function () {
    var mask = MASKS[this.show] || 0, v = this.variant, needle = this.needle, out = [];
    for (var i = 0; i < this.rows.length; i++) {
      var fl = this.rows[i][FLAGS];
      if (mask) {
        var hit = false;
        for (var k = 0; k < fl.length; k++) {
          if ((v < 0 || k === v) && (fl[k] & mask)) { hit = true; break; }
        }
        if (!hit) { continue; }
      }
      if (needle && this.haystack(i).indexOf(needle) === -1) { continue; }
      out.push(i);
    }
    this.sorted(out);
    this.view = out;
    this.render();
  };

  Table.prototype.sorted = function (idx) {
    var self = this, key = this.sortKey, dir = this.sortDir;
    if (key === null) { return; }
    idx.sort(function (a, b) {
      var x, y;
      if (key === "id") { x = self.rows[a][ID]; y = self.rows[b][ID]; }
      else { x = self.value(self.rows[a], key); y = self.value(self.rows[b], key); }
      if (x === y) { return a - b; }
      if (x === null || x === undefined) { return 1; }  // missing scores last, either way
      if (y === null || y === undefined) { return -1; }
      return (x < y ? -1 : 1) * dir;
    });
  };

  Table.prototype.header = function () {
    var self = this, tr = el("tr"), cols = [["#", null], ["id", "id"], ["prompt", null]];
    variants.forEach(function (name, k) { cols.push([name, k]); });
    cols.forEach(function (c) {
      var th = el("th", c[1] !== null && typeof c[1] === "number" ? "num sortable" : "", c[0]);
      if (c[1] !== null) {
        th.classList.add("sortable");
        th.tabIndex = 0;
        if (self.sortKey === c[1]) { th.appendChild(el("span", "arrow", self.sortDir > 0 ? " \u25b2" : " \u25bc")); }
        var go = function () {
          self.sortDir = self.sortKey === c[1] ? -self.sortDir : 1;
          self.sortKey = c[1]; self.page = 0; self.apply();
        };
        th.addEventListener("click", go);
        th.addEventListener("keydown", function (e) { if (e.key === "Enter") { go(); } });
      }
      tr.appendChild(th);
    });
    var head = this.root.querySelector("thead");
    head.textContent = "";
    head.appendChild(tr);
  };

  Table.prototype.render = function () {
    var self = this, n = this.view.length, pages = Math.max(1, Math.ceil(n / PAGE));
    this.page = Math.min(Math.max(this.page, 0), pages - 1);
    var start = this.page * PAGE, end = Math.min(n, start + PAGE);
    this.header();
    var body = this.root.querySelector("tbody");
    body.textContent = "";
    for (var p = start; p < end; p++) {
      var i = this.view[p];
      body.appendChild(this.row(i));
      if (this.open[i]) { body.appendChild(this.detail(i)); }
    }
    this.q("f-count").textContent = (n ? (start + 1) + "\u2013" + end + " of " : "0 of ") +
      n + " matching (" + this.rows.length + " examples)";
    this.q("f-page").textContent = "page " + (this.page + 1) + " of " + pages;
    this.q("f-prev").disabled = this.page === 0;
    this.q("f-next").disabled = this.page >= pages - 1;
    this.root.setAttribute("data-shown", String(n));
  };

  Table.prototype.row = function (i) {
    var self = this, r = this.rows[i], tr = el("tr", "row" + (this.open[i] ? " open" : ""));
    var m = this.metrics[this.metric], hib = m ? m.higher_is_better : true;
    tr.tabIndex = 0;
    tr.appendChild(el("td", "num muted", i + 1));
    var idCell = el("td"); idCell.appendChild(el("code", null, r[ID])); tr.appendChild(idCell);
    var prompt = r[PROMPT].slice(this.task.prompt_prefix || 0).trim().replace(/\s+/g, " ");
    tr.appendChild(el("td", "snippet", prompt.length > 90 ? prompt.slice(0, 90) + "\u2026" : prompt));
    var base = baseIdx >= 0 ? this.value(r, baseIdx) : null;
    var binary = m && m.binary && hib !== false;
    variants.forEach(function (name, k) {
      var x = self.value(r, k), td = el("td", "num"), fl = r[FLAGS][k];
      td.appendChild(el("span", "v", fmt(x)));
      if (k !== baseIdx && x !== null && base !== null && x !== base && hib !== null) {
        td.classList.add((x > base) === hib ? "up" : "down");
        // flips of the metric shown (the row flags cover every metric of the example)
        if (binary && base === 1 && x === 0) { td.appendChild(el("span", "flip down", " \u2713\u2192\u2717")); }
        if (binary && base === 0 && x === 1) { td.appendChild(el("span", "flip up", " \u2717\u2192\u2713")); }
      }
      if (fl & JUDGE_ERROR) { td.appendChild(el("span", "flip jerr", " judge error")); }
      tr.appendChild(td);
    });
    var toggle = function () { self.open[i] = !self.open[i]; self.render(); };
    tr.addEventListener("click", toggle);
    tr.addEventListener("keydown", function (e) { if (e.key === "Enter") { toggle(); } });
    return tr;
  };

  Table.prototype.detail = function (i) {
    var self = this, r = this.rows[i], tr = el("tr", "detail"), td = el("td");
    td.colSpan = 3 + variants.length;
    var box = el("div", "sample");
    box.appendChild(el("div", "label", "Prompt"));
    box.appendChild(el("pre", null, r[PROMPT]));
    if (r[REF] !== null) {
      box.appendChild(el("div", "label", "Reference"));
      box.appendChild(el("pre", "ref", r[REF]));
    }
    var grid = el("div", "outputs"), baseOut = baseIdx >= 0 ? r[OUTS][baseIdx] : null;
    variants.forEach(function (name, k) {
      var col = el("div", "output"), out = r[OUTS][k];
      col.appendChild(el("div", "label", name + (k === baseIdx ? " (base)" : "")));
      if (out === null) { col.appendChild(el("p", "muted small", "no output")); }
      else if (k === baseIdx) { col.appendChild(el("pre", "out", out)); }
      else { col.appendChild(diffPre(baseOut, out)); }
      var sc = el("div", "scores");
      self.metrics.forEach(function (m, j) {
        var x = r[SCORES][k][j], b = baseIdx >= 0 ? r[SCORES][baseIdx][j] : null, cls = "score";
        if (k !== baseIdx && x !== null && b !== null && x !== b && m.higher_is_better !== null) {
          cls += (x > b) === m.higher_is_better ? " up" : " down";
        }
        sc.appendChild(el("span", cls, m.label + " " + fmt(x)));
      });
      col.appendChild(sc);
      ((r[JUDG] && r[JUDG][k]) || []).forEach(function (jd) {
        if (!jd) { return; }
        var jb = el("div", "judge" + (jd[2] ? " error" : ""));
        jb.appendChild(el("div", "label", "judge " + (jd[3] || "") + ": score " + fmt(jd[0])));
        if (jd[1]) { jb.appendChild(el("pre", "reason", jd[1])); }
        if (jd[2]) { jb.appendChild(el("pre", "jerr", "error: " + jd[2])); }
        [["judge prompt", jd[4]], ["raw reply", jd[5]]].forEach(function (pair) {
          if (!pair[1]) { return; }
          var d = el("details"); d.appendChild(el("summary", null, pair[0]));
          d.appendChild(el("pre", null, pair[1])); jb.appendChild(d);
        });
        col.appendChild(jb);
      });
      grid.appendChild(col);
    });
    box.appendChild(grid);
    td.appendChild(box);
    tr.appendChild(td);
    return tr;
  };

  /* The page data: plain JSON, or (large runs) deflated JSON in base64; see _samples.encode. */
  function load(node) {
    if (node.getAttribute("data-encoding") !== "deflate-base64") {
      return Promise.resolve(JSON.parse(node.textContent));
    }
    if (typeof DecompressionStream === "undefined") {
      return Promise.reject(new Error("this browser cannot inflate the example data " +
        "(it needs DecompressionStream: Chrome 80+, Firefox 113+, Safari 16.4+)"));
    }
    var bin = atob(node.textContent.trim()), bytes = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) { bytes[i] = bin.charCodeAt(i); }
    var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
    return new Response(stream).text().then(JSON.parse);
  }

  load(document.getElementById("page-data")).then(function (d) {
    data = d;
    variants = data.variants;
    baseIdx = variants.indexOf(data.base);
    Array.prototype.forEach.call(document.querySelectorAll(".task-samples"), function (root) {
      root.evalkitTable = new Table(root, data.tasks[Number(root.getAttribute("data-task"))]);
    });
    document.body.setAttribute("data-ready", "1");
  }, function (err) {
    var note = el("p", "note", "The example tables could not load: " + err.message +
      ". Every example is in results.json.");
    document.getElementById("samples").appendChild(note);
    document.body.setAttribute("data-ready", "error");
  });
}());
