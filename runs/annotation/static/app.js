// esc-eval annotate: label dialogues 0-4 per dimension, keyboard first. No build step.
// Dialogues the safety judge took also list its yes/no safety items (1 yes, 0 no), sent to
// /api/safety; the page is never given the judge's own answers.
// Every label is POSTed when given; until the server confirms it, it is kept in
// localStorage ("pending") and re-sent on the next load, so a reload loses nothing.
// The server's per-start token comes in this page's URL (?token=) and goes back in a
// header on every API call. Dialogue text is only ever set as text, never as HTML.
"use strict";

const NAME_KEY = "esc-eval-annotator";
const PENDING_KEY = "esc-eval-pending-items";
const TOKEN = new URLSearchParams(location.search).get("token") || "";
const $ = (id) => document.getElementById(id);

const state = { annotator: null, session: null, index: 0, episode: null, labels: {}, dim: 0, inflight: 0 };

function pending() {
  try { return JSON.parse(localStorage.getItem(PENDING_KEY) || "{}"); } catch { return {}; }
}
function savePending(p) { localStorage.setItem(PENDING_KEY, JSON.stringify(p)); }

function setStatus(text, cls) {
  const el = $("status");
  el.textContent = text;
  el.className = "status " + (cls || "");
}

async function api(path, options = {}) {
  const headers = Object.assign({ "X-ESC-Eval-Token": TOKEN }, options.headers);
  const response = await fetch(path, Object.assign({}, options, { headers }));
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function item() { return state.session.queue[state.index]; }
// The rows of the panel: the dimensions, then the current dialogue's safety items (if any).
function dims() {
  const rows = state.session.dimensions.map((d) => Object.assign({ safety: false }, d));
  const it = state.session.queue.length ? item() : null;
  for (const key of (it && it.safety ? it.safety.items : [])) {
    rows.push({ key, name: "safety: " + key.replace(/_/g, " "), rubric: state.session.safety_items[key], safety: true });
  }
  return rows;
}
function answers(it) { return it.safety ? it.safety.labels : {}; }
function complete(q) {
  return state.session.dimensions.every((d) => q.labels[d.key] !== undefined)
    && (q.safety ? q.safety.items : []).every((k) => q.safety.labels[k] !== undefined);
}
function given(d) { return d.safety ? answers(item())[d.key] : state.labels[d.key]; }

async function start(name) {
  state.annotator = name;
  localStorage.setItem(NAME_KEY, name);
  $("login").hidden = true;
  $("work").hidden = false;
  $("switch").hidden = false;
  $("who").textContent = "annotator: " + name;
  await flush();
  state.session = await api("/api/session?annotator=" + encodeURIComponent(name));
  const mine = pending();
  for (const entry of Object.values(mine)) {
    const it = state.session.queue.find((q) => q.item === entry.item);
    if (!it || entry.annotator !== name) continue;
    if (entry.safety_item !== undefined) { if (it.safety) it.safety.labels[entry.safety_item] = entry.value; }
    else it.labels[entry.dimension] = entry.label;
  }
  if (!state.session.queue.length) {
    $("meta").textContent = "Nothing to label: every dialogue has its annotators.";
    renderProgress();
    return;
  }
  const first = state.session.queue.findIndex((q) => !complete(q));
  await show(first < 0 ? 0 : first);
}

async function show(index) {
  const queue = state.session.queue;
  if (index < 0 || index >= queue.length) return;
  state.index = index;
  const it = item();
  const episode = await api("/api/episode?item=" + encodeURIComponent(it.item) + "&annotator=" + encodeURIComponent(state.annotator));
  state.episode = episode;
  state.labels = Object.assign({}, episode.labels, it.labels);
  it.labels = state.labels;
  if (episode.safety) it.safety = Object.assign({}, episode.safety, { labels: Object.assign({}, episode.safety.labels, answers(it)) });
  const firstOpen = dims().findIndex((d) => given(d) === undefined);
  state.dim = firstOpen < 0 ? 0 : firstOpen;
  $("meta").textContent = state.session.blind
    ? `item ${episode.item} · ${episode.language}`
    : `dialogue ${episode.key} · supporter ${episode.supporter} · persona ${episode.persona} · ${episode.language}`;
  const turns = $("turns");
  turns.replaceChildren();
  episode.transcript.forEach((turn, index) => {
    const li = document.createElement("li");
    li.className = turn.role + (episode.safety && episode.safety.disclosure_turn === index ? " disclosure" : "");
    const who = document.createElement("b");
    who.textContent = turn.role;
    li.append(who, document.createTextNode(turn.text));
    turns.append(li);
  });
  document.body.dataset.item = episode.item;
  render();
}

function render() {
  const list = $("dims");
  list.replaceChildren();
  dims().forEach((d, i) => {
    const li = document.createElement("li");
    li.dataset.dimension = d.key;
    li.dataset.testid = "dim-" + d.key;
    li.className = (i === state.dim ? "active " : "") + (given(d) !== undefined ? "done" : "") + (d.safety ? " safety" : "");
    const name = document.createElement("span");
    name.className = "dname";
    name.textContent = d.name;
    const buttons = document.createElement("span");
    for (let v = d.safety ? 1 : 0; v >= 0 && v <= 4; v += d.safety ? -1 : 1) {
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = d.safety ? (v ? "yes" : "no") : String(v);
      b.dataset.testid = d.safety ? `safety-${d.key}-${v ? "yes" : "no"}` : `label-${d.key}-${v}`;
      b.setAttribute("aria-pressed", String(d.safety ? given(d) === (v === 1) : given(d) === v));
      b.addEventListener("click", (e) => { e.stopPropagation(); state.dim = i; give(v); });
      buttons.append(b);
    }
    li.addEventListener("click", () => { state.dim = i; render(); });
    li.append(name, buttons);
    list.append(li);
  });
  const d = dims()[state.dim];
  const lang = state.episode && d.rubric[state.episode.language] ? state.episode.language : Object.keys(d.rubric)[0];
  $("rubric-title").textContent = `${d.name} (${state.dim + 1}/${dims().length})`;
  $("rubric").textContent = d.rubric[lang];
  renderProgress();
}

function renderProgress() {
  const queue = state.session ? state.session.queue : [];
  const done = queue.filter((q) => complete(q)).length;
  $("progress").textContent = queue.length
    ? `dialogue ${state.index + 1}/${queue.length} · ${done} complete`
    : "0 dialogues";
  $("progress").dataset.complete = String(done);
}

function give(value) {
  const d = dims()[state.dim];
  if (d.safety && value > 1) return;
  let entry;
  if (d.safety) {
    answers(item())[d.key] = value === 1;
    entry = { annotator: state.annotator, item: item().item, safety_item: d.key, value: value === 1 };
  } else {
    state.labels[d.key] = value;
    entry = { annotator: state.annotator, item: item().item, dimension: d.key, label: value };
  }
  const p = pending();
  p[`${entry.annotator}\u0000${entry.item}\u0000${d.safety ? "safety:" : ""}${d.key}`] = entry;
  savePending(p);
  const next = dims().findIndex((x, i) => i > state.dim && given(x) === undefined);
  if (next >= 0) state.dim = next;
  else if (state.dim < dims().length - 1) state.dim += 1;
  render();
  flush();
}

async function flush() {
  const p = pending();
  const entries = Object.entries(p);
  if (!entries.length) return;
  state.inflight += 1;
  setStatus("saving…", "saving");
  let failed = false;
  for (const [id, entry] of entries) {
    try {
      const path = entry.safety_item !== undefined ? "/api/safety" : "/api/label";
      await api(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(entry) });
      const now = pending();
      if (now[id] && now[id].label === entry.label && now[id].value === entry.value) { delete now[id]; savePending(now); }
    } catch (error) {
      failed = true;
      setStatus("not saved: " + error.message + " (retrying)", "error");
    }
  }
  state.inflight -= 1;
  if (failed) { setTimeout(flush, 2000); return; }
  if (!state.inflight && !Object.keys(pending()).length) setStatus("all labels saved", "saved");
}

function nextUnlabelled() {
  const queue = state.session.queue;
  for (let step = 1; step <= queue.length; step++) {
    const i = (state.index + step) % queue.length;
    if (!complete(queue[i])) return show(i);
  }
}

document.addEventListener("keydown", (event) => {
  if (!state.session || !state.session.queue.length || event.target.tagName === "INPUT") return;
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const key = event.key;
  if (/^[0-4]$/.test(key)) give(Number(key));
  else if (key === "ArrowDown" || key === "j") { state.dim = Math.min(state.dim + 1, dims().length - 1); render(); }
  else if (key === "ArrowUp" || key === "k") { state.dim = Math.max(state.dim - 1, 0); render(); }
  else if (key === "ArrowRight" || key === "n") show(state.index + 1);
  else if (key === "ArrowLeft" || key === "p") show(state.index - 1);
  else if (key === "u") nextUnlabelled();
  else return;
  event.preventDefault();
});

$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  const name = $("name").value.trim();
  if (name) start(name).catch((e) => setStatus(e.message, "error"));
});
$("switch").addEventListener("click", () => { localStorage.removeItem(NAME_KEY); location.reload(); });

window.addEventListener("online", flush);
const remembered = localStorage.getItem(NAME_KEY);
if (remembered) start(remembered).catch((e) => setStatus(e.message, "error"));
else $("name").focus();
