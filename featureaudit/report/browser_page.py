"""The feature browser's page: HTML, CSS and plain JavaScript, no network, no libraries.
browser.py fills in __TITLE__ and __DATA__ (JSON). Opens from disk. The address's fragment
selects: `#f=<id>` opens a feature's card, `v=<variant>` the table's variant, `rows=<n>` the
page length (e.g. `browser.html#f=12&v=rtn-w5`)."""

PAGE = r"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<style>
body{font:13px/1.4 system-ui,sans-serif;margin:0;color:#222;display:flex;height:100vh}
#left{flex:none;width:610px;overflow:auto;padding:8px 12px;border-right:1px solid #ccc;box-sizing:border-box}
#card{flex:1;overflow:auto;padding:8px 12px;box-sizing:border-box}
h1{font-size:16px;margin:4px 0}h2{font-size:14px;margin:10px 0 4px}
table{border-collapse:collapse}td,th{padding:2px 6px;text-align:right;white-space:nowrap}
th{cursor:pointer;background:#f2f2f2;position:sticky;top:0}th.sorted{background:#dde}
#features tbody tr{cursor:pointer}#features tbody tr:hover{background:#eef}
tr.open{background:#ffd !important}
.s-survived{color:#1a7f37}.s-blurred{color:#b35900}.s-damaged{color:#c62828;font-weight:600}.s-inactive{color:#888}
.ctx{margin:6px 0 10px;border-left:3px solid #ddd;padding-left:6px}
.line{font:12px/1.6 ui-monospace,monospace;white-space:pre;display:flex}
.lab{width:110px;flex:none;color:#555;overflow:hidden;text-overflow:ellipsis}
.tok{border-radius:2px}.center{outline:1px solid #444}
#controls *{margin-right:6px}.muted{color:#666}.note{color:#666;font-size:12px}
</style></head><body>
<div id="left">
<h1 id="title"></h1><div id="hooks" class="note"></div><div id="verdict" class="note"></div>
<div id="controls">
variant <select id="variant"></select>
status <select id="status"><option value="any">any</option><option value="notsurvived">not survived</option>
<option value="survived">survived</option><option value="blurred">blurred</option><option value="damaged">damaged</option></select>
feature <input id="search" size="6" placeholder="id">
</div>
<div id="count" class="note"></div>
<table id="features"><thead><tr>
<th data-k="feature">feature</th><th data-k="fp_tokens">FP tokens</th><th data-k="peak">peak</th>
<th data-k="freq">firing freq</th><th data-k="status">status</th><th data-k="r">r</th><th data-k="risk">risk</th>
<th data-k="broken" title="variants in which the feature did not survive">not survived in</th></tr></thead><tbody></tbody></table>
<div id="pager"></div>
</div>
<div id="card"><p class="muted">Click a feature to open its card.</p></div>
<script id="data" type="application/json">__DATA__</script>
<script>
"use strict";
const t0 = performance.now();
const D = JSON.parse(document.getElementById("data").textContent);
function dec(b64, T) {
  const bin = atob(b64), u = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) u[i] = bin.charCodeAt(i);
  return new T(u.buffer);
}
const NF = D.n_features, V = D.variants, NV = V.length;
const feat = dec(D.feature, Int32Array), fpTok = dec(D.fp_tokens, Int32Array);
const peak = dec(D.peak, Float32Array), freq = dec(D.freq, Float32Array), meanAct = dec(D.mean_active, Float32Array);
const R = dec(D.r, Float32Array), ST = dec(D.status, Int8Array), RISK = dec(D.risk, Float32Array);
const CR = dec(D.causal_r, Float32Array), STEER = dec(D.steering, Float32Array);
const ctxStart = dec(D.ctx_start, Int32Array), ctxLen = dec(D.ctx_len, Int32Array), ctxCenter = dec(D.ctx_center, Int32Array);
const scale = dec(D.scale, Float32Array);
let TOK = null, VAL = null, cellStart = null;  // decoded when the first card opens
const SURV = D.statuses.indexOf("survived"), INACT = D.statuses.indexOf("inactive");
const broken = new Int32Array(NF);
for (let j = 0; j < NV; j++) for (let i = 0; i < NF; i++) { const s = ST[j * NF + i]; if (s !== SURV && s !== INACT) broken[i]++; }
const byId = new Map(); for (let i = 0; i < NF; i++) byId.set(feat[i], i);

let state = {variant: Math.min(NV - 1, 1), status: "any", search: "", key: "broken", desc: true, page: 0, open: -1,
             cardAll: true, rows: 50};
const fmt = (x, d) => (x === null || Number.isNaN(x)) ? "–" : x.toFixed(d);
const pct = x => (x === null) ? "–" : (100 * x).toFixed(1) + " %";

document.getElementById("title").textContent = D.model + " at " + D.hook + ": " + NF + " FP-active features, " + NV + " variants";
if (D.hooks.length > 1) {  // the other hooks' pages sit beside this one: results/<model>/<hook>/browser.html
  const box = document.getElementById("hooks");
  box.appendChild(document.createTextNode("SAE at: "));
  D.hooks.forEach(h => {
    const a = document.createElement(h === D.hook ? "b" : "a");
    a.textContent = h;
    if (h !== D.hook) { a.href = "../" + h + "/browser.html"; a.className = "hook"; }
    box.appendChild(a); box.appendChild(document.createTextNode(" "));
  });
}
const sel = document.getElementById("variant");
V.forEach((v, j) => { const o = document.createElement("option"); o.value = j; o.textContent = v.name; sel.appendChild(o); });
sel.value = state.variant;

function key(i) {
  const j = state.variant;
  switch (state.key) {
    case "feature": return feat[i]; case "fp_tokens": return fpTok[i]; case "peak": return peak[i];
    case "freq": return freq[i]; case "status": return ST[j * NF + i]; case "r": return R[j * NF + i];
    case "risk": return RISK[j * NF + i]; default: return broken[i];
  }
}
function rows() {
  const j = state.variant, out = [];
  const want = state.status === "any" ? -2 : state.status === "notsurvived" ? -1 : D.statuses.indexOf(state.status);
  const q = state.search.trim();
  for (let i = 0; i < NF; i++) {
    const s = ST[j * NF + i];
    if (want === -1 && (s === SURV || s === INACT)) continue;
    if (want >= 0 && s !== want) continue;
    if (q && !String(feat[i]).startsWith(q)) continue;
    out.push(i);
  }
  const sgn = state.desc ? -1 : 1;
  out.sort((a, b) => {
    let ka = key(a), kb = key(b);
    if (Number.isNaN(ka)) ka = -Infinity; if (Number.isNaN(kb)) kb = -Infinity;
    return ka === kb ? feat[a] - feat[b] : (ka < kb ? -sgn : sgn);
  });
  return out;
}
function td(text, cls) { const c = document.createElement("td"); c.textContent = text; if (cls) c.className = cls; return c; }
function renderTable() {
  const list = rows(), j = state.variant;
  const pages = Math.max(1, Math.ceil(list.length / state.rows));
  state.page = Math.min(state.page, pages - 1);
  const body = document.querySelector("#features tbody");
  body.replaceChildren();
  for (const i of list.slice(state.page * state.rows, (state.page + 1) * state.rows)) {
    const tr = document.createElement("tr");
    const s = D.statuses[ST[j * NF + i]];
    tr.append(td(feat[i]), td(fpTok[i]), td(fmt(peak[i], 2)), td(fmt(freq[i], 4)), td(s, "s-" + s),
              td(fmt(R[j * NF + i], 3)), td(fmt(RISK[j * NF + i], 2)), td(broken[i] + " / " + NV));
    tr.dataset.i = i;
    if (i === state.open) tr.className = "open";
    tr.addEventListener("click", () => { location.hash = "f=" + feat[i] + "&v=" + encodeURIComponent(V[state.variant].name); });
    body.appendChild(tr);
  }
  document.getElementById("count").textContent = list.length + " features match; page " + (state.page + 1) + " of " + pages;
  const pager = document.getElementById("pager");
  pager.replaceChildren();
  for (const [label, p] of [["« first", 0], ["‹ prev", state.page - 1], ["next ›", state.page + 1], ["last »", pages - 1]]) {
    const b = document.createElement("button"); b.textContent = label; b.disabled = p < 0 || p >= pages || p === state.page;
    b.addEventListener("click", () => { state.page = p; renderTable(); }); pager.appendChild(b);
  }
  document.querySelectorAll("th").forEach(th => th.classList.toggle("sorted", th.dataset.k === state.key));
  const v = V[j];
  document.getElementById("verdict").textContent = v.name + ": " + (v.verdict || "");
}
document.querySelectorAll("th").forEach(th => th.addEventListener("click", () => {
  if (state.key === th.dataset.k) state.desc = !state.desc; else { state.key = th.dataset.k; state.desc = true; }
  renderTable();
}));
sel.addEventListener("change", () => { state.variant = +sel.value; state.page = 0; renderTable(); });
document.getElementById("status").addEventListener("change", e => { state.status = e.target.value; state.page = 0; renderTable(); });
document.getElementById("search").addEventListener("input", e => { state.search = e.target.value; state.page = 0; renderTable(); });

async function inflate(b64, T) {
  const bin = atob(b64), u = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) u[i] = bin.charCodeAt(i);
  const stream = new Blob([u]).stream().pipeThrough(new DecompressionStream("gzip"));
  return new T(await new Response(stream).arrayBuffer());
}
async function decodeContexts() {
  if (TOK) return;
  [TOK, VAL] = await Promise.all([inflate(D.tokens, Int32Array), inflate(D.values, Uint8Array)]);
  cellStart = new Int32Array(ctxLen.length + 1);
  for (let c = 0; c < ctxLen.length; c++) cellStart[c + 1] = cellStart[c] + ctxLen[c];
}
function shown(tok) { return tok.replace(/\n/g, "↵").replace(/\t/g, "→"); }
function contextLine(label, c, row, i) {
  const line = document.createElement("div"); line.className = "line";
  const lab = document.createElement("span"); lab.className = "lab"; lab.textContent = label; line.appendChild(lab);
  const ncell = TOK.length;
  for (let k = cellStart[c]; k < cellStart[c + 1]; k++) {
    const q = VAL[row * ncell + k], act = q * scale[i];
    const span = document.createElement("span"); span.className = "tok";
    span.textContent = shown(D.vocab[TOK[k]]);
    const a = Math.min(1, q / 127.5);  // 1 at the feature's FP peak
    span.style.background = "rgba(255,120,0," + a.toFixed(3) + ")";
    if (k - cellStart[c] === ctxCenter[c]) span.classList.add("center");
    span.title = label + ": " + act.toFixed(3);
    line.appendChild(span);
  }
  return line;
}
function rPlot(i) {
  // r against bits per weight: one line per family with two or more bit-widths, dots otherwise
  const W = 440, H = 170, L = 48, B = 30;
  const pts = V.map((v, j) => ({v, j, x: v.bits_per_weight, y: R[j * NF + i]})).filter(p => p.v.name !== "fp" && p.x !== null && p.x < 32);
  const svgNS = "http://www.w3.org/2000/svg", svg = document.createElementNS(svgNS, "svg");
  svg.setAttribute("width", W); svg.setAttribute("height", H);
  if (!pts.length) return svg;
  const xs = pts.map(p => p.x), x0 = Math.min(...xs) - 0.3, x1 = Math.max(...xs) + 0.3;
  const X = x => L + (x - x0) / (x1 - x0) * (W - L - 8), Y = y => 6 + (1 - Math.max(-0.2, Number.isNaN(y) ? -0.2 : y)) / 1.2 * (H - B - 6);
  const el = (n, a) => { const e = document.createElementNS(svgNS, n); for (const k in a) e.setAttribute(k, a[k]); svg.appendChild(e); return e; };
  for (const [y, lab] of [[1, "1"], [D.thresholds.survived_r, "survived"], [D.thresholds.blurred_r, "blurred"], [0, "0"]]) {
    el("line", {x1: L, x2: W - 8, y1: Y(y), y2: Y(y), stroke: "#ddd"});
    el("text", {x: 2, y: Y(y) + 4, "font-size": 9, fill: "#666"}).textContent = lab;
  }
  el("text", {x: W / 2, y: H - 2, "font-size": 10, "text-anchor": "middle", fill: "#444"}).textContent = "bits per weight";
  for (let b = Math.ceil(x0); b <= Math.floor(x1); b++) {
    el("line", {x1: X(b), x2: X(b), y1: H - B, y2: H - B + 4, stroke: "#888"});
    el("text", {x: X(b), y: H - B + 14, "font-size": 9, "text-anchor": "middle", fill: "#666"}).textContent = b;
  }
  const fams = {};
  pts.forEach(p => (fams[p.v.family] = fams[p.v.family] || []).push(p));
  const palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#ff7f0e", "#393b79", "#637939"];
  Object.keys(fams).forEach((f, n) => {
    const ps = fams[f].sort((a, b) => a.x - b.x), col = palette[n % palette.length];
    el("text", {x: W - 8, y: 12 + 11 * n, "font-size": 9, "text-anchor": "end", fill: col}).textContent = f;
    if (ps.length > 1) el("polyline", {points: ps.map(p => X(p.x) + "," + Y(p.y)).join(" "), fill: "none", stroke: col});
    ps.forEach(p => { el("circle", {cx: X(p.x), cy: Y(p.y), r: 3, fill: col}).appendChild(document.createElementNS(svgNS, "title")).textContent = p.v.name + ": r = " + fmt(p.y, 3); });
  });
  return svg;
}
async function openCard(i) {
  await decodeContexts();
  state.open = i;
  const card = document.getElementById("card"); card.replaceChildren();
  const h = document.createElement("h1"); h.textContent = "Feature " + feat[i]; card.appendChild(h);
  const p = document.createElement("p"); p.className = "note";
  p.textContent = "FP: fires on " + fpTok[i] + " audit tokens (frequency " + fmt(freq[i], 4) + "), peak " + fmt(peak[i], 3) +
    ", mean when active " + fmt(meanAct[i], 3) + ". Not survived in " + broken[i] + " of " + NV + " variants.";
  card.appendChild(p);
  const h2a = document.createElement("h2"); h2a.textContent = "r against bits per weight"; card.appendChild(h2a);
  card.appendChild(rPlot(i));
  const tab = document.createElement("table"); tab.id = "variants";
  const head = document.createElement("tr");
  const cols = ["variant", "status", "r", "risk"].concat(D.has_causal ? ["causal r", "steering overlap"] : []);
  for (const t of cols) { const th = document.createElement("th"); th.textContent = t; head.appendChild(th); }
  tab.appendChild(head);
  V.forEach((v, j) => {
    const s = D.statuses[ST[j * NF + i]], tr = document.createElement("tr");
    tr.append(td(v.name), td(s, "s-" + s), td(fmt(R[j * NF + i], 3)), td(fmt(RISK[j * NF + i], 2)));
    if (D.has_causal) {
      const c = CR[j * NF + i], o = STEER[j * NF + i];
      const broken = !Number.isNaN(c) && c < D.thresholds.survived_r;
      tr.append(td(fmt(c, 3), broken && s === "survived" ? "s-damaged" : ""), td(fmt(o, 2)));
    }
    tab.appendChild(tr);
  });
  card.appendChild(tab);
  const n = document.createElement("p"); n.className = "note";
  n.textContent = "risk: out-of-fold probability of not surviving predicted from FP statistics alone. " +
    (D.has_causal ? "causal r: correlation of the feature's ablation effects in FP and the variant (sampled features and causal variants only; red where it survives geometrically but not causally); steering overlap: shared share of the top promoted tokens. " : "") + "Shading: activation relative to the feature's FP peak; the boxed token is the context's FP maximum; hover a token for its value.";
  card.appendChild(n);
  const h2 = document.createElement("h2"); h2.textContent = "Top FP contexts, FP and the variants on the same tokens"; card.appendChild(h2);
  const only = document.createElement("label"); only.className = "note";
  const box0 = document.createElement("input"); box0.type = "checkbox"; box0.checked = state.cardAll;
  box0.addEventListener("change", () => { state.cardAll = box0.checked; openCard(i); });
  only.append(box0, " every variant (else only the table's: " + V[state.variant].name + ")"); card.appendChild(only);
  for (let c = ctxStart[i]; c < ctxStart[i + 1]; c++) {
    const box = document.createElement("div"); box.className = "ctx";
    box.appendChild(contextLine("FP", c, 0, i));
    V.forEach((v, j) => { if (v.name !== "fp" && (state.cardAll || j === state.variant)) box.appendChild(contextLine(v.name, c, j + 1, i)); });
    card.appendChild(box);
  }
  if (ctxStart[i] === ctxStart[i + 1]) { const e = document.createElement("p"); e.textContent = "No contexts stored."; card.appendChild(e); }
  renderTable();
}
function route() {
  const rows = /rows=(\d+)/.exec(location.hash), v = /v=([^&]+)/.exec(location.hash);
  if (rows) state.rows = Math.max(1, +rows[1]);
  if (v) { const j = V.findIndex(x => x.name === decodeURIComponent(v[1])); if (j >= 0) { state.variant = j; sel.value = j; } }
  const m = /f=(\d+)/.exec(location.hash);
  if (m && byId.has(+m[1])) openCard(byId.get(+m[1])).then(() => { document.body.dataset.cardMs = (performance.now() - t0).toFixed(1); });
}
window.addEventListener("hashchange", route);
route();
renderTable();
document.body.dataset.loadMs = (performance.now() - t0).toFixed(1);
document.body.dataset.scriptStartMs = t0.toFixed(1);  // since navigation: reading the file, parsing the page
</script></body></html>
"""
