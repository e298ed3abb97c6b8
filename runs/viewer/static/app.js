// esc-eval view: one page over the JSON of runs/viewer/data.py, served live (``esc-eval view``)
// or embedded in one file (``esc-eval report --format html``). Every text from a store goes
// through text nodes (el()), never innerHTML, so a dialogue holding markup shows as text.

const ROW = 28;                       // episode list row height (px): fixed, so only visible rows are built
const POLL_MS = 3000;                 // live follow: how often /api/version is asked
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf", "#7f7f7f"];
const FILTERS = ["supporter", "language", "persona", "category", "source", "outcome"];
const SVG = "http://www.w3.org/2000/svg";

function el(tag, attrs = {}, ...children) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(typeof child === "string" || typeof child === "number" ? document.createTextNode(String(child)) : child);
  }
  return node;
}

const fmt = (v, digits = 1) => (v === null || v === undefined || Number.isNaN(v) ? "–" : Number(v).toFixed(digits));

// -- data sources: the live server, or the data embedded in a report file ------------------

function remoteSource(token) {
  const get = async (path) => {
    const response = await fetch(path, { headers: { "X-ESC-Eval-Token": token || "" } });
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || response.statusText);
    return body;
  };
  return {
    live: true,
    summary: () => get("/api/summary"),
    version: async () => (await get("/api/version")).version,
    episode: (id) => get(`/api/episode?id=${encodeURIComponent(id)}`),
    search: async (q) => new Set((await get(`/api/search?q=${encodeURIComponent(q)}`)).ids),
  };
}

function embeddedSource(bundle) {
  return {
    live: false,
    summary: async () => bundle.summary,
    version: async () => null,
    episode: async (id) => bundle.episodes[id],
    search: async (q) => {
      const needle = q.toLocaleLowerCase();
      return new Set(Object.entries(bundle.episodes)
        .filter(([, e]) => e.turns.some((t) => t.text.toLocaleLowerCase().includes(needle))).map(([id]) => id));
    },
  };
}

async function inflate(base64) {
  // The report's data: gzipped JSON in base64 (runs/viewer/html.py), inflated by the browser itself.
  const bytes = Uint8Array.from(atob(base64.trim()), (c) => c.charCodeAt(0));
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
  return JSON.parse(await new Response(stream).text());
}

const embedded = document.getElementById("esc-data");
let source = null;

// -- state ---------------------------------------------------------------------------------

const state = { summary: null, rows: [], filters: {}, query: "", matches: null, shown: [], sort: null, selected: null, version: null };
const $ = (id) => document.getElementById(id);

function supporters() { return [...new Set(state.rows.map((r) => r.supporter))].sort(); }
function color(supporter) { return COLORS[supporters().indexOf(supporter) % COLORS.length]; }
function dimensions() { return state.summary.dimensions; }

function meanScore(row) {
  const values = Object.values(row.scores).filter((v) => v !== null && v >= 0);
  return values.length ? values.reduce((a, b) => a + b, 0) / values.length : null;
}

function visibleRows() {
  return state.rows.filter((r) => FILTERS.every((f) => !state.filters[f] || String(r[f]) === state.filters[f])
    && (state.matches === null || state.matches.has(r.id)));
}

// -- filters ---------------------------------------------------------------------------------

function renderFilters() {
  const box = $("filters");
  box.replaceChildren();
  for (const f of FILTERS) {
    const values = [...new Set(state.rows.map((r) => String(r[f])))].sort();
    const select = el("select", { "data-testid": `filter-${f}`, onchange: (ev) => { state.filters[f] = ev.target.value; refresh(); } },
      el("option", { value: "" }, "all"), values.map((v) => el("option", { value: v, selected: state.filters[f] === v }, v)));
    box.append(el("label", {}, f, select));
  }
  let timer = null;
  const search = el("input", { type: "search", placeholder: "search dialogue text", "data-testid": "search", value: state.query,
    oninput: (ev) => {
      clearTimeout(timer);
      timer = setTimeout(async () => {
        state.query = ev.target.value.trim();
        state.matches = state.query ? await source.search(state.query) : null;
        refresh();
      }, 250);
    } });
  box.append(search);
}

// -- leaderboard -----------------------------------------------------------------------------

function leaderboardRows(part) {
  // A facet filter (language, persona, category, source, outcome) picks that facet's table; a supporter filter keeps its rows.
  const facet = ["language", "persona", "category", "source", "outcome"].find((f) => state.filters[f]);
  const report = facet ? part.leaderboard.facets[facet] : part.leaderboard.overall;
  return report.rows.filter((row) => (!facet || row.group[facet] === state.filters[facet])
    && (!state.filters.supporter || row.group.supporter === state.filters.supporter));
}

function renderLeaderboard() {
  const box = $("leaderboard");
  box.replaceChildren();
  const dims = dimensions();
  for (const part of state.summary.stores) {
    let rows = leaderboardRows(part);
    const by = rows.length ? Object.keys(rows[0].group) : ["supporter"];
    const costs = priced(part.leaderboard.overall.cost) && rows.some((row) => row.cost);   // docs/cost.md
    if (state.sort) {
      const { column, desc } = state.sort;
      const key = (row) => (column in row.group ? row.group[column] : column === "episodes" ? row.episodes.done : row.scores[column]?.value ?? -Infinity);
      rows = [...rows].sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0) * (desc ? -1 : 1));
    }
    const header = (column, label) => el("th", {
      class: `sortable${state.sort?.column === column ? (state.sort.desc ? " sorted-desc" : " sorted-asc") : ""}`,
      "data-testid": `sort-${column}`, title: "sort",
      onclick: () => { state.sort = { column, desc: state.sort?.column === column ? !state.sort.desc : column !== "supporter" }; renderLeaderboard(); },
    }, label);
    const table = el("table", { "data-store": part.index },
      el("caption", {}, state.summary.stores.length > 1 ? part.name : ""),
      el("thead", {}, el("tr", {}, by.map((c) => header(c, c)), header("episodes", "episodes"), dims.map((d) => header(d.key, d.name)),
        costs ? [el("th", { title: "the supporter's own calls (USD)" }, "supporter $"),
                 el("th", { title: "every role's cost per episode that started (USD)" }, "$ / episode")] : [])),
      el("tbody", {}, rows.map((row) => el("tr", { "data-group": Object.values(row.group).join("/") },
        by.map((c) => el("td", {}, row.group[c])),
        el("td", { class: "num" }, String(row.episodes.done), row.episodes.failed ? el("span", { class: "error" }, ` +${row.episodes.failed} failed`) : null),
        dims.map((d) => {
          const s = row.scores[d.key];
          const flags = s?.flags || [];
          return el("td", { class: "num", "data-dimension": d.key, "data-flags": flags.join(" "),
                            title: s ? `n=${s.n}, cards=${s.n_cards}; score = mean over cards of the card's mean label × 25` : "" },
            s ? fmt(s.value) : "–", s ? el("span", { class: "ci" }, ` [${fmt(s.ci_low)}, ${fmt(s.ci_high)}]`) : null,
            flags.length ? el("span", { class: "flags", title: FLAG_HELP }, ` ${flags.map(flagText).join(", ")}`) : null);
        }),
        costs ? [el("td", { class: "num", "data-testid": "supporter-cost" }, usd(row.cost?.supporter_usd)),
                 el("td", { class: "num" }, usd(row.cost?.per_episode_usd))] : []))));
    box.append(table);
    const cost = part.leaderboard.overall.cost;
    if (cost) box.append(costLine(cost));
    const pending = [part.leaderboard.overall.comparisons_pending && "paired comparisons", part.leaderboard.overall.cost_pending && "costs"].filter(Boolean);
    if (pending.length) box.append(el("p", { class: "meta", "data-testid": "pending" }, `${pending.join(" and ")}: being computed (a large store); shown when ready`));
  }
  renderComparisons();
  renderSafety();
}

// -- cost (docs/cost.md): null = unknown (an endpoint without a price), never 0 ------------------

function usd(x) { return x === null || x === undefined ? "–" : x === 0 ? "$0" : Math.abs(x) < 1 ? `$${x.toFixed(4)}` : `$${x.toFixed(2)}`; }
function priced(cost) { return !!cost && [...Object.values(cost.by_role), ...Object.values(cost.by_supporter)].some((x) => x !== null); }

function costLine(cost) {
  const tokens = Object.entries(cost.tokens).map(([role, t]) => `${role} ${t.input.toLocaleString()} / ${t.output.toLocaleString()}`);
  const money = priced(cost)
    ? [`cost: total ${usd(cost.total_usd)} · `, Object.entries(cost.by_role).map(([role, x]) => `${role} ${usd(x)}`).join(" · "),
       cost.cached_usd_saved ? ` · cache hits saved ${usd(cost.cached_usd_saved)}` : "", ". "]
    : ["no prices in the config: tokens only. "];
  return el("p", { class: "meta", "data-testid": "cost" }, ...money, `Tokens sent (input / output): ${tokens.join(" · ")}`,
    cost.estimated ? " (some estimated at ~4 characters a token)" : "");
}

const FLAG_HELP = "small n: fewer than 10 cards; no spread: every card the same, the interval is that of one card moved one label; "
  + "underpowered: even the smallest p the test can give fails Holm (docs/statistics.md)";

function flagText(flag) {
  return flag.replace("_", " ");
}

function fmtP(p) {
  return p == null ? "–" : p < 0.001 ? p.toExponential(1) : p.toFixed(3);
}

function renderComparisons() {
  const box = $("comparisons");
  box.replaceChildren();
  for (const part of state.summary.stores) {
    const comparisons = (part.leaderboard.overall.comparisons || [])
      .filter((c) => !state.filters.supporter || c.a === state.filters.supporter || c.b === state.filters.supporter);
    if (!comparisons.length) continue;
    const name = Object.fromEntries(dimensions().map((d) => [d.key, d.name]));
    box.append(el("h3", {}, "Paired comparisons (same cards; sign-flip test and the interval inverting it, Holm-adjusted p)"),
      el("table", { "data-testid": "comparison-table" },
        el("thead", {}, el("tr", {}, ["a", "b", "dimension", "a − b", "95% interval", "p (Holm)", "wins/ties/losses", "cards", "flags"]
          .map((h) => el("th", {}, h)))),
        el("tbody", {}, comparisons.map((c) => el("tr", { "data-flags": (c.flags || []).join(" ") },
          el("td", {}, c.a), el("td", {}, c.b), el("td", {}, name[c.dimension] || c.dimension), el("td", { class: "num" }, fmt(c.diff)),
          el("td", { class: "num" }, `[${fmt(c.ci_low)}, ${fmt(c.ci_high)}]`),
          el("td", { class: "num" }, c.p_is_bound ? `< ${fmtP(c.p_holm)}` : fmtP(c.p_holm)),
          el("td", { class: "num" }, `${c.wins}/${c.ties}/${c.losses}`), el("td", { class: "num" }, String(c.n_cards)),
          el("td", { class: "flags", title: FLAG_HELP }, (c.flags || []).map((f) => f === "underpowered"
            ? `${c.n_cards} cards cannot resolve this comparison` : flagText(f)).join(", ")))))));
  }
}

function pct(x) { return x == null ? "–" : `${Math.round(100 * x)}%`; }

function renderSafety() {   // docs/safety.md: the gate and rates per supporter
  const box = $("safety");
  box.replaceChildren();
  for (const part of state.summary.stores) {
    const rows = (part.leaderboard.overall.safety || []).filter((r) => !state.filters.supporter || r.supporter === state.filters.supporter);
    if (!rows.length) continue;
    box.append(el("h3", {}, `Safety (gate: no harmful reply and missed-risk interval at most ${pct(rows[0].max_missed)})`),
      el("table", { "data-testid": "safety-table" },
        el("thead", {}, el("tr", {}, ["supporter", "gate", "missed", "95% interval", "asked", "resources", "help", "harmful", "risk episodes",
          "excluded", "false alarms", "controls", "flags"].map((h) => el("th", {}, h)))),
        el("tbody", {}, rows.map((r) => el("tr", { "data-gate": r.gate || "none" },
          el("td", {}, r.supporter), el("td", { class: r.gate === "fail" ? "error" : "" }, r.gate || "–"),
          el("td", { class: "num" }, pct(r.missed_rate)), el("td", { class: "num" }, `[${pct(r.missed_ci[0])}, ${pct(r.missed_ci[1])}]`),
          el("td", { class: "num" }, pct(r.asked_rate)), el("td", { class: "num" }, pct(r.resources_rate)),
          el("td", { class: "num" }, pct(r.help_rate)), el("td", { class: "num" }, String(r.harmful)),
          el("td", { class: "num" }, String(r.n_risk)), el("td", { class: "num" }, String(r.n_excluded)),
          el("td", { class: "num" }, pct(r.false_alarm_rate)), el("td", { class: "num" }, String(r.n_control)),
          el("td", { class: "flags" }, r.flags.join(", ")))))));
    const humans = part.leaderboard.overall.safety_agreement;   // judge vs the human answers (docs/safety.md#humans-in-the-loop)
    if (humans) box.append(el("h4", {}, `Safety items, judge vs humans (${humans.episodes} episodes, ${humans.cards} cards, `
        + `${humans.annotators.length} annotators; Cohen's kappa, card-clustered interval)`),
      el("table", { "data-testid": "safety-agreement" },
        el("thead", {}, el("tr", {}, ["item", "kappa", "95% interval", "agree", "pairs", "cards", "note"].map((h) => el("th", {}, h)))),
        el("tbody", {}, Object.entries(humans.items).map(([item, a]) => el("tr", { "data-item": item },
          el("td", {}, item), el("td", { class: "num" }, a.kappa == null ? "–" : a.kappa.toFixed(2)),
          el("td", { class: "num" }, a.ci ? `[${a.ci[0].toFixed(2)}, ${a.ci[1].toFixed(2)}]` : "–"),
          el("td", { class: "num" }, pct(a.agree)), el("td", { class: "num" }, String(a.n)),
          el("td", { class: "num" }, String(a.n_cards)), el("td", { class: "flags" }, a.note || ""))))));
  }
}

function safetyTable(detail) {   // the safety judge's items per sample, and where the disclosure was
  const first = detail.safety[0];
  const where = first.kind === "risk" || first.kind === "excluded"
    ? `risk ${first.risk}, disclosed in seeker reply ${first.disclosure_round}${first.disclosure_turn != null ? ` (line ${first.disclosure_turn + 1})` : ""}`
    : "control (no risk)";
  return el("div", { "data-testid": "safety-items" }, el("p", {}, `${first.kind}: ${where}`),
    el("table", {}, el("thead", {}, el("tr", {}, ["sample", "status", "items", "judge reply"].map((h) => el("th", {}, h)))),
      el("tbody", {}, detail.safety.map((j) => el("tr", {}, el("td", { class: "num" }, String(j.sample)),
        el("td", { class: j.status === "ok" ? "" : "error" }, j.status),
        el("td", {}, j.items ? Object.entries(j.items).map(([k, v]) => `${k} ${v ? "yes" : "no"}`).join(" · ") : "–"),
        el("td", {}, j.raw ? el("details", {}, el("summary", {}, "reply"), el("pre", { class: "raw" }, j.raw)) : ""))))));
}

// -- charts (hand-written SVG) ---------------------------------------------------------------

function legend(names) {
  return el("div", { class: "legend" }, names.map((n) => el("span", {}, el("span", { class: "swatch", "data-color": color(n) }), n)));
}

function paintSwatches(root) {
  for (const s of root.querySelectorAll(".swatch")) s.style.background = s.dataset.color;   // CSSOM: allowed by the CSP
}

function distributionChart(rows, dim) {
  const names = [...new Set(rows.map((r) => r.supporter))].sort();
  const w = 220, h = 120, pad = 18, groupW = (w - pad) / 5, barW = (groupW - 6) / Math.max(names.length, 1);
  const counts = names.map((n) => [0, 1, 2, 3, 4].map((label) => rows.filter((r) => r.supporter === n && r.scores[dim.key] === label).length));
  const totals = counts.map((c) => c.reduce((a, b) => a + b, 0) || 1);
  const bars = [];
  counts.forEach((c, i) => c.forEach((count, label) => {
    const share = count / totals[i], bh = share * (h - 2 * pad);
    bars.push(el("svg:rect", { x: pad + label * groupW + i * barW, y: h - pad - bh, width: barW - 1, height: bh, fill: color(names[i]) },
      el("svg:title", {}, `${names[i]}: label ${label}, ${count} episodes (${Math.round(share * 100)}%)`)));
  }));
  const ticks = [0, 1, 2, 3, 4].map((label) => el("svg:text", { x: pad + label * groupW + groupW / 2 - 3, y: h - 4, "font-size": 10 }, String(label)));
  return el("figure", { "data-testid": `chart-${dim.key}` }, el("figcaption", {}, `${dim.name}: label distribution`),
    el("svg:svg", { width: w, height: h, viewBox: `0 0 ${w} ${h}`, role: "img" },
      el("svg:line", { x1: pad, y1: h - pad, x2: w, y2: h - pad, stroke: "#999" }), bars, ticks));
}

function trajectoryChart(rows) {
  const names = [...new Set(rows.map((r) => r.supporter))].sort();
  const series = names.map((n) => {
    const sums = [], counts = [];
    for (const r of rows.filter((x) => x.supporter === n)) r.distress.forEach((d, i) => { sums[i] = (sums[i] || 0) + d; counts[i] = (counts[i] || 0) + 1; });
    return { name: n, points: sums.map((s, i) => [i + 1, s / counts[i], counts[i]]) };
  });
  const w = 340, h = 160, pad = 26;
  const maxX = Math.max(1, ...series.flatMap((s) => s.points.map((p) => p[0])));
  const maxY = Math.max(1, ...series.flatMap((s) => s.points.map((p) => p[1])));
  const x = (v) => pad + (v - 1) / Math.max(maxX - 1, 1) * (w - 2 * pad), y = (v) => h - pad - v / maxY * (h - 2 * pad);
  const lines = series.filter((s) => s.points.length).map((s) => el("svg:g", { "data-supporter": s.name },
    el("svg:polyline", { fill: "none", stroke: color(s.name), "stroke-width": 2, points: s.points.map((p) => `${x(p[0])},${y(p[1])}`).join(" ") }),
    s.points.map((p) => el("svg:circle", { cx: x(p[0]), cy: y(p[1]), r: 2.5, fill: color(s.name) },
      el("svg:title", {}, `${s.name}: seeker turn ${p[0]}, mean distress ${fmt(p[1], 2)} (${p[2]} episodes)`)))));
  return el("figure", { "data-testid": "chart-distress" }, el("figcaption", {}, "Seeker distress over turns (mean per supporter)"),
    el("svg:svg", { width: w, height: h, viewBox: `0 0 ${w} ${h}`, role: "img" },
      el("svg:line", { x1: pad, y1: h - pad, x2: w - pad, y2: h - pad, stroke: "#999" }),
      el("svg:line", { x1: pad, y1: pad, x2: pad, y2: h - pad, stroke: "#999" }),
      el("svg:text", { x: 2, y: pad, "font-size": 10 }, fmt(maxY, 0)), el("svg:text", { x: 2, y: h - pad, "font-size": 10 }, "0"),
      el("svg:text", { x: w - pad - 40, y: h - 6, "font-size": 10 }, `turn ${maxX}`), lines), legend(names));
}

function renderCharts() {
  const rows = state.shown.filter((r) => r.status === "done");
  const box = $("charts");
  box.replaceChildren(trajectoryChart(rows), ...dimensions().map((d) => distributionChart(rows, d)));
  paintSwatches(box);
}

// -- episode list (virtualised) ----------------------------------------------------------------

let listed = new Map();   // episode id -> its row node while the row is in view

function renderList() {
  // Only the rows in view are built; a row staying in view keeps its node (only its class and place are set), so
  // a click that straddles a scroll, or a live reload of the same rows, lands on the row that was pressed.
  const box = $("episodes"), spacer = $("spacer");
  spacer.style.height = `${state.shown.length * ROW}px`;
  const first = Math.max(0, Math.floor(box.scrollTop / ROW) - 5);
  const last = Math.min(state.shown.length, Math.ceil((box.scrollTop + box.clientHeight) / ROW) + 5);
  const rows = [], kept = new Map();
  for (let i = first; i < last; i++) {
    const r = state.shown[i];
    const cells = [r.supporter, r.persona, `card ${r.card}`, r.language, r.status === "done" ? r.outcome || "" : r.status,
                   fmt(meanScore(r), 2), r.reason || ""];
    let row = listed.get(r.id);
    if (!row || row.shows !== cells.join("\u001f")) {
      row = el("div", { "data-testid": "episode-row", "data-id": r.id, onclick: () => openEpisode(r.id) },
        ["c-sup", "c-per", "c-card", "c-lang", "c-out", "c-score", null].map((name, k) =>
          el("span", { class: name, title: name === "c-score" ? "mean judge label" : null }, cells[k])));
      row.shows = cells.join("\u001f");
    }
    row.className = `row${state.selected === r.id ? " selected" : ""}`;
    row.style.top = `${i * ROW}px`;
    kept.set(r.id, row);
    rows.push(row);
  }
  listed = kept;
  for (const node of [...spacer.children]) if (kept.get(node.dataset.id) !== node) node.remove();
  let next = spacer.firstChild;     // the kept rows stay attached (a click is lost when its row leaves the page); new ones go around them
  for (const row of rows) {
    if (row === next) next = next.nextSibling;
    else spacer.insertBefore(row, next);
  }
  $("count").textContent = `(${state.shown.length} of ${state.rows.length})`;
}

// -- one episode, and two side by side ---------------------------------------------------------

function stateLine(s) {
  if (!s) return null;
  const parts = [];
  if (s.emotion !== undefined) parts.push(`emotion ${s.emotion}`);
  if (s.distress !== undefined) parts.push(`distress ${s.distress}`);
  if (Array.isArray(s.revealed)) parts.push(`revealed facts ${s.revealed.length ? s.revealed.join(", ") : "none"}${s.facts !== undefined ? ` of ${s.facts}` : ""}`);
  if (s.leaving) parts.push(`leaving: ${s.leaving}`);
  if (s.risk) parts.push(`risk ${s.risk} (${s.disclosure}, disclosed in reply ${s.disclosure_round})${s.disclosed ? " · disclosed" : ""}`);
  return el("span", { class: "state", "data-testid": "state" }, parts.join(" · "));
}

function tokensText(t) {   // docs/cost.md: tokens a source did not record are unknown, never 0
  if (t.usage === "unknown") return "tokens unknown";
  return `${t.prompt_tokens}+${t.completion_tokens} tokens${t.usage === "estimated" ? " (estimated)" : ""}${t.cached ? " (cache hit)" : ""}`;
}

function dialogue(detail) {
  return el("ol", { class: "bubbles", "data-testid": "dialogue" }, detail.turns.map((t) =>
    el("li", { class: `bubble ${t.role}`, "data-role": t.role, title: `${t.role}, ${fmt(t.latency, 2)} s, ${tokensText(t)}` },
      el("span", { class: "text" }, t.text), t.role === "seeker" ? stateLine(t.state) : null)));
}

function finalScores(detail) {
  return Object.fromEntries(detail.scores.filter((s) => s.round === -1 && s.sample === 0).map((s) => [s.dimension, s]));
}

function scoresTable(detail) {
  const finals = finalScores(detail);
  return el("table", { "data-testid": "scores" },
    el("thead", {}, el("tr", {}, ["dimension", "label", "status", "judge reply"].map((h) => el("th", {}, h)))),
    el("tbody", {}, dimensions().map((d) => {
      const s = finals[d.key];
      return el("tr", { "data-dimension": d.key }, el("td", {}, d.name), el("td", { class: "num" }, s && s.label !== null ? String(s.label) : "–"),
        el("td", { class: s && s.status !== "ok" ? "error" : "" }, s ? s.status + (s.error ? `: ${s.error}` : "") : "missing"),
        el("td", {}, s && s.raw ? el("details", {}, el("summary", {}, `${s.model || "judge"}, ${fmt(s.latency, 2)} s`), el("pre", { class: "raw" }, s.raw)) : ""));
    })));
}

function rowOf(id) { return state.rows.find((r) => r.id === id); }

function counterparts(row) {
  return state.rows.filter((r) => r.store === row.store && r.card === row.card && r.language === row.language && r.persona === row.persona
    && r.repeat === row.repeat && r.supporter !== row.supporter);
}

async function openEpisode(id) {
  state.selected = id;
  renderList();
  const row = rowOf(id), box = $("detail");
  const detail = await source.episode(id);
  if (!detail || state.selected !== id) return;
  const others = counterparts(row);
  box.hidden = false;
  box.replaceChildren(
    el("h2", {}, "Episode"),
    el("p", { class: "meta", "data-testid": "episode-meta" },
      `${row.supporter} · persona ${row.persona} · card ${row.card} (${row.language}, ${row.category}, ${row.source}) · repeat ${row.repeat}`),
    el("p", { "data-testid": "outcome" }, `${row.status}${row.outcome ? `: ${row.outcome}` : ""}${row.reason ? ` (${row.reason})` : ""}`,
      ` · ${row.attempts} attempt${row.attempts === 1 ? "" : "s"}`, row.seconds !== null ? ` · ${fmt(row.seconds, 1)} s` : "",
      row.cost_usd !== null && row.cost_usd !== undefined ? ` · ${usd(row.cost_usd)}` : ""),
    ...(others.length ? [el("p", {}, "Same card by ", others.map((o) => el("button", { "data-testid": `compare-${o.supporter}`,
      onclick: () => openPair(row, o) }, o.supporter)))] : []),   // replaceChildren writes a null as the text "null"
    el("div", { class: "columns" }, el("div", {}, el("h3", {}, "Dialogue"), dialogue(detail)),
      el("div", {}, el("h3", {}, "Judge scores"), scoresTable(detail),
        ...(detail.safety && detail.safety.length ? [el("h3", {}, "Safety judge"), safetyTable(detail)] : []),
        el("h3", {}, "Retries and faults"),
        detail.events.length ? el("ul", { "data-testid": "events" }, detail.events.map((e) =>
          el("li", {}, `${new Date(e.at * 1000).toISOString()} ${e.kind}${e.endpoint ? ` ${e.endpoint}` : ""}${e.detail ? `: ${e.detail}` : ""}`)))
          : el("p", { "data-testid": "events" }, "none"))));
  $("pair").hidden = true;
  box.scrollIntoView({ block: "start" });
}

async function openPair(a, b) {
  const [da, db] = await Promise.all([source.episode(a.id), source.episode(b.id)]);
  const fa = finalScores(da), fb = finalScores(db);
  const label = (s) => (s && s.label !== null ? String(s.label) : "–");
  const box = $("pair");
  box.hidden = false;
  box.replaceChildren(
    el("h2", {}, `Side by side: card ${a.card} (${a.language}), persona ${a.persona}`),
    el("table", { "data-testid": "pair-scores" },
      el("thead", {}, el("tr", {}, el("th", {}, "dimension"), el("th", {}, a.supporter), el("th", {}, b.supporter))),
      el("tbody", {}, dimensions().map((d) => el("tr", { "data-dimension": d.key }, el("td", {}, d.name),
        el("td", { class: "num" }, label(fa[d.key])), el("td", { class: "num" }, label(fb[d.key])))))),
    el("div", { class: "columns" }, [[a, da], [b, db]].map(([row, detail]) => el("div", { "data-testid": `pair-${row.supporter}` },
      el("h3", {}, row.supporter), el("p", { class: "meta" }, `${row.outcome || row.status}${row.reason ? ` (${row.reason})` : ""}`),
      dialogue(detail)))));
  box.scrollIntoView({ block: "start" });
}

// -- wiring ---------------------------------------------------------------------------------

function refresh() {
  state.shown = visibleRows();
  renderLeaderboard();
  renderCharts();
  renderList();
}

async function load() {
  source ??= embedded ? embeddedSource(await inflate(embedded.textContent)) : remoteSource(new URLSearchParams(location.search).get("token"));
  const summary = await source.summary();
  state.summary = summary;
  state.version = JSON.stringify(summary.version ?? null);
  state.rows = summary.stores.flatMap((s) => s.episodes);
  $("stores").textContent = summary.stores.map((s) => s.name).join(", ");
  renderFilters();
  refresh();
  document.body.dataset.ready = "true";
}

async function follow() {
  try {
    const version = JSON.stringify(await source.version());
    $("live").textContent = `live · ${new Date().toLocaleTimeString()}`;
    if (version !== state.version) await load();
  } catch (err) {
    $("live").textContent = `not following: ${err.message}`;
  }
  setTimeout(follow, POLL_MS);
}

$("episodes").addEventListener("scroll", () => requestAnimationFrame(renderList));
load().then(() => {
  if (source.live) setTimeout(follow, POLL_MS);
  else $("live").textContent = "report (static)";
}).catch((err) => { $("live").textContent = ""; $("detail").hidden = false; $("detail").replaceChildren(el("p", { class: "error", "data-testid": "error" }, err.message)); });
