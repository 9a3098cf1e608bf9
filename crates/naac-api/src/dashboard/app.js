// The naac dashboard: plain DOM, no framework, no CDN. Everything a peer or a guest wrote
// (job names, stdout, host ids) goes in as text, never as markup.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

async function api(path, opts = {}) {
  const r = await fetch(path, { credentials: "same-origin", ...opts });
  const type = r.headers.get("content-type") || "";
  if (!r.ok) {
    let p = { detail: r.statusText };
    try { p = await r.json(); } catch (_) { /* not a problem document */ }
    if (r.status === 401) showLogin();
    throw new ApiError(r.status, p);
  }
  return type.includes("json") ? r.json() : r.text();
}

const short = (id) => (id && id.length > 14 ? "…" + id.slice(-12) : id || "");
const when = (ms) => (ms ? new Date(ms).toLocaleString() : "");
const bytes = (n) => {
  if (n === null || n === undefined) return "";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${u[i]}`;
};

function bar(done, total, state) {
  const pct = total ? Math.round((100 * done) / total) : (state === "done" ? 100 : 0);
  const inner = el("div", { class: state || "", style: `width:${pct}%` });
  return el("span", { class: "bar", title: `${done}/${total}` }, inner);
}

function counts(j) {
  const p = j.progress, s = j.summary && j.summary.tasks;
  if (p) return { done: p.succeeded, total: p.total, text: `${p.succeeded}/${p.total} tasks, ${p.running} running, ${p.failed} failed, ${p.providers} providers` + (p.waiting ? ` — waiting: ${p.waiting}` : "") };
  if (s) return { done: s.succeeded, total: s.total, text: `${s.succeeded}/${s.total} tasks, ${s.failed} failed, ${s.retried} retried` };
  return { done: 0, total: 0, text: "" };
}

// ---- tabs ----------------------------------------------------------------------------
let timer = null;
let stream = null;

function showLogin() {
  for (const s of document.querySelectorAll("main > section")) s.hidden = s.id !== "login";
}

function route() {
  clearInterval(timer);
  timer = null;
  if (stream) { stream.close(); stream = null; }
  const [tab, arg] = (location.hash.slice(1) || "jobs").split("/");
  for (const s of document.querySelectorAll("main > section")) s.hidden = s.id !== tab;
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.tab === tab || (tab === "job" && a.dataset.tab === "jobs"));
  const views = { jobs: showJobs, job: () => showJob(arg), pool: showPool, market: showMarket, wallet: showWallet, policy: showPolicy, node: showNode };
  (views[tab] || showJobs)();
}

function every(ms, f) {
  f();
  timer = setInterval(f, ms);
}

// ---- jobs ----------------------------------------------------------------------------
function showJobs() {
  every(2000, async () => {
    const page = await api("/v1/jobs?limit=100");
    const body = $("#job-table tbody");
    body.replaceChildren(...page.jobs.map((j) => {
      const c = counts(j);
      return el("tr", { class: "link", "data-id": j.id, onclick: () => { location.hash = `job/${j.id}`; } },
        el("td", {}, el("code", {}, j.id)), el("td", {}, j.name),
        el("td", { class: `state-${j.state}` }, j.state),
        el("td", {}, bar(c.done, c.total, j.state), " ", el("span", { class: "muted" }, c.done !== undefined && c.total ? `${c.done}/${c.total}` : (j.error || ""))),
        el("td", { class: "muted" }, when(j.submitted_ms)));
    }));
    $("#jobs-empty").hidden = page.jobs.length > 0;
  });
}

async function submitJob(ev) {
  ev.preventDefault();
  const err = $("#submit-error");
  err.hidden = true;
  const form = new FormData();
  let job = $("#job-file").files[0];
  const parts = [];
  for (const f of $("#job-folder").files) {
    // A folder's files by their path inside it.
    const rel = f.webkitRelativePath.split("/").slice(1).join("/");
    if (!job && rel === "job.toml") { job = f; continue; }
    if (job && rel === job.name && f.size === job.size) continue;
    parts.push([rel, f]);
  }
  for (const f of $("#job-files").files) parts.push([f.name, f]);
  if (!job) {
    err.textContent = "choose the job file (or a folder with a job.toml in it)";
    err.hidden = false;
    return;
  }
  form.append("job", job, "job.toml");
  for (const [name, f] of parts) form.append(name, f, name);
  try {
    const j = await api("/v1/jobs", { method: "POST", body: form });
    $("#submit-form").reset();
    location.hash = `job/${j.id}`;
  } catch (e) {
    err.textContent = e.message;
    err.hidden = false;
  }
}

// ---- one job -------------------------------------------------------------------------
let taskFrom = 0;
const TASK_PAGE = 50;

let currentJob = null;

function showJob(id) {
  currentJob = id;
  taskFrom = 0;
  $("#output").hidden = true;
  $("#output-title").hidden = true;
  $("#job-archive").href = `/v1/jobs/${encodeURIComponent(id)}/archive`;
  const samples = [];
  let last = null;
  const draw = (j) => {
    $("#job-name").textContent = j.name;
    $("#job-id").textContent = j.id;
    const st = $("#job-state");
    st.textContent = j.state;
    st.className = `state-${j.state}`;
    $("#job-error").textContent = j.error || "";
    const c = counts(j);
    const pct = c.total ? (100 * c.done) / c.total : (j.state === "done" ? 100 : 0);
    const b = $("#job-bar");
    b.style.width = `${pct}%`;
    b.className = j.state;
    $("#job-counts").textContent = c.text + (j.progress && j.progress.cost ? `, ${j.progress.cost} credits paid` : "");
    $("#job-cancel").hidden = !(j.state === "queued" || j.state === "running");
    samples.push([Date.now(), c.done || 0]);
    sparkline(samples);
    if (j.summary) drawSummary(j.summary);
    else $("#job-summary").replaceChildren();
    if (!last || last.state !== j.state || (j.progress && c.done !== counts(last).done)) loadTasks(id);
    last = j;
  };
  $("#job-cancel").onclick = async () => {
    try { draw(await api(`/v1/jobs/${encodeURIComponent(id)}`, { method: "DELETE" })); } catch (e) { $("#job-error").textContent = e.message; }
  };
  api(`/v1/jobs/${encodeURIComponent(id)}`).then(draw).catch((e) => { $("#job-error").textContent = e.message; });
  stream = new EventSource(`/v1/jobs/${encodeURIComponent(id)}/events`);
  const onEvent = (ev) => draw(JSON.parse(ev.data));
  stream.addEventListener("state", onEvent);
  stream.addEventListener("progress", onEvent);
  // The stream ends after the job does; do not reconnect.
  stream.onerror = () => { if (stream) stream.close(); };
}

function sparkline(samples) {
  const svg = $("#job-spark");
  const rates = [];
  for (let i = 1; i < samples.length; i++) {
    const dt = (samples[i][0] - samples[i - 1][0]) / 1000;
    if (dt > 0) rates.push((samples[i][1] - samples[i - 1][1]) / dt);
  }
  const tail = rates.slice(-60);
  const max = Math.max(1, ...tail);
  const pts = tail.map((r, i) => `${(i * 320) / Math.max(1, tail.length - 1)},${46 - (r / max) * 44}`).join(" ");
  const ns = "http://www.w3.org/2000/svg";
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", pts);
  svg.replaceChildren(line);
  svg.setAttribute("aria-label", `tasks accepted per second, latest ${tail.length ? tail[tail.length - 1].toFixed(1) : 0}, peak ${max.toFixed(1)}`);
}

function drawSummary(s) {
  const dl = el("dl", {});
  const row = (k, v) => { if (v !== null && v !== undefined && v !== "") dl.append(el("dt", {}, k), el("dd", {}, v)); };
  row("wall time", `${s.wall_seconds.toFixed(2)} s`);
  row("fuel", s.fuel_total.toLocaleString());
  const v = s.verification || {};
  row("verification", `${v.replicas} replica(s), quorum ${v.quorum}; ${v.verified} verified, ${v.disagreements} disagreements, ${v.rejected_results} results rejected`);
  if (s.cost) row("cost", `${s.cost.paid} paid, ${s.cost.refunded} refunded (escrow ${s.cost.escrow}, bank ${short(s.cost.bank)})`);
  if (s.interrupted) row("interrupted", "yes: stopped before it ended");
  const parts = [dl];
  if (s.reduce) {
    const pre = el("pre", { id: "reduce-output" }, "…");
    parts.unshift(el("h3", {}, `Result (reduce: ${s.reduce.outcome})`), pre);
    api(`/v1/jobs/${encodeURIComponent(currentJob)}/reduce/stdout`)
      .then((t) => { pre.textContent = t; })
      .catch((e) => { pre.textContent = e.message; pre.classList.add("error"); });
  }
  if (s.providers && s.providers.length) {
    parts.push(el("h3", {}, "Providers"), el("table", {},
      el("thead", {}, el("tr", {}, ...["provider", "tasks", "verified", "rejected", "lost", "earned", "direct / relayed"].map((h) => el("th", {}, h)))),
      el("tbody", {}, ...s.providers.map((p) => el("tr", {},
        el("td", { title: p.peer_id }, short(p.peer_id)), el("td", {}, p.tasks), el("td", {}, p.verified),
        el("td", {}, p.rejected), el("td", {}, p.lost), el("td", {}, p.earned || ""),
        el("td", {}, `${p.arrived.direct} / ${p.arrived.relayed}`))))));
  }
  if (s.discrepancies && s.discrepancies.length) {
    parts.push(el("h3", {}, "Discrepancies"), el("pre", {}, JSON.stringify(s.discrepancies, null, 2)));
  }
  if (s.failures && s.failures.length) {
    parts.push(el("h3", {}, "Failures"), el("ul", {}, ...s.failures.slice(0, 50).map((f) => el("li", {}, `task ${f.task}: ${f.kind}: ${f.message}`))));
  }
  $("#job-summary").replaceChildren(...parts);
}

async function loadTasks(id) {
  const t = await api(`/v1/jobs/${encodeURIComponent(id)}/tasks?from=${taskFrom}&limit=${TASK_PAGE}`);
  const base = `/v1/jobs/${encodeURIComponent(id)}/tasks`;
  $("#task-table tbody").replaceChildren(...t.tasks.map((k) => {
    const r = k.result || {};
    const out = el("td", {});
    if (k.state === "accepted") {
      out.append(el("button", { type: "button", class: "stdout", onclick: () => showOutput(`task ${k.index}: stdout`, `${base}/${k.index}/stdout`) }, "stdout"), " ",
        el("button", { type: "button", onclick: () => showOutput(`task ${k.index}: stderr`, `${base}/${k.index}/stderr`) }, "stderr"));
      for (const f of k.files || []) out.append(" ", el("a", { href: `${base}/${k.index}/out/${f.split("/").map(encodeURIComponent).join("/")}`, download: f }, f));
    } else if (k.failure) {
      out.append(el("span", { class: "error" }, `${k.failure.kind}: ${k.failure.message}`));
    }
    return el("tr", { "data-task": k.index },
      el("td", {}, k.index), el("td", {}, k.state), el("td", {}, r.attempt ?? ""),
      el("td", { title: r.provider || "" }, short(r.provider)), el("td", {}, r.fuel !== undefined ? r.fuel.toLocaleString() : ""),
      el("td", {}, r.verified === undefined ? "" : (r.verified ? `yes (${r.copies} copies)` : (r.copies > 1 ? `no (${r.copies} copies)` : "one copy"))), out);
  }));
  $("#tasks-range").textContent = t.total ? `${t.from}–${Math.min(t.total, t.from + TASK_PAGE) - 1} of ${t.total}` : "";
  $("#tasks-prev").disabled = taskFrom === 0;
  $("#tasks-next").disabled = taskFrom + TASK_PAGE >= t.total;
  $("#tasks-prev").onclick = () => { taskFrom = Math.max(0, taskFrom - TASK_PAGE); loadTasks(id); };
  $("#tasks-next").onclick = () => { taskFrom += TASK_PAGE; loadTasks(id); };
}

async function showOutput(title, url) {
  const out = $("#output");
  $("#output-title").textContent = title;
  $("#output-title").hidden = false;
  try { out.textContent = await api(url); out.classList.remove("error"); } catch (e) { out.textContent = e.message; out.classList.add("error"); }
  out.hidden = false;
}

// ---- pool, market --------------------------------------------------------------------
function showPool() {
  every(10000, async () => {
    let p;
    try { p = await api("/v1/pool"); } catch (e) { $("#pool-totals").textContent = e.message; return; }
    const t = p.totals;
    const disk = t.store_hosts ? `, ${t.store_hosts} lend disk (${bytes(t.store_free)} free, ${bytes(t.store_used)} held)` : "";
    $("#pool-totals").textContent = `${t.hosts} hosts (${t.accepting} accepting), ${t.cores} cores, ${bytes(t.memory_available)} memory free, ${t.free_slots}/${t.slots} slots free, ${t.compute_score.toFixed(2)} Gfuel/s${disk}`;
    $("#pool-grid").replaceChildren(...p.hosts.map((h) => {
      const cls = h.denied ? "host denied" : (h.state.accepting ? "host" : "host paused");
      const r = h.resources || {};
      return el("div", { class: cls, title: h.peer_id, "data-peer": h.peer_id },
        el("b", {}, short(h.peer_id)),
        el("div", {}, h.denied ? "denies you" : (h.state.accepting ? "accepting" : `paused: ${h.state.paused}`)),
        el("div", {}, `${h.free_slots}/${h.slots} slots, ${r.cpu ? r.cpu.cores : "?"} cores`),
        el("div", {}, h.ask ? `asks ${h.ask} cr/Gfuel` : "no ask heard"),
        el("div", { class: "store" }, h.store ? `disk ${bytes(h.store.free)} free, ${bytes(h.store.used)} held, ${h.store.price} cr/GiB-day` : "lends no disk"),
        el("div", {}, `${h.connection || "?"}, ${h.latency_ms !== null ? h.latency_ms.toFixed(1) + " ms" : ""}`),
        el("div", {}, h.reputation ? `score ${h.reputation.score.toFixed(2)}` : "new"));
    }));
  });
}

function showMarket() {
  every(10000, async () => {
    let offers;
    try { offers = await api("/v1/market"); } catch (e) { $("#market-note").textContent = e.message; return; }
    $("#market-note").textContent = `${offers.length} live offers, refreshed every 10 s`;
    $("#market-table tbody").replaceChildren(...offers.map((o) => el("tr", {},
      el("td", { title: o.peer_id }, short(o.peer_id)), el("td", {}, o.price), el("td", {}, `${o.free_slots}/${o.slots}`),
      el("td", {}, o.cores), el("td", {}, bytes(o.memory_available)), el("td", {}, o.compute_score.toFixed(2)),
      el("td", {}, o.accepting ? "accepting" : "paused"))));
  });
}

// ---- wallet --------------------------------------------------------------------------
async function showWallet() {
  $("#wallet-error").hidden = true;
  $("#wallet-verdict").textContent = "";
  try {
    const w = await api("/v1/wallet");
    $("#wallet-balance").textContent = `${w.balance.balance} credits`;
    $("#wallet-account").textContent = w.balance.account;
    $("#wallet-history tbody").replaceChildren(...w.history.map((e) => el("tr", {},
      el("td", {}, e.seq), el("td", {}, when(e.time_ms)), el("td", {}, e.kind), el("td", {}, e.change),
      el("td", {}, e.job ? short(e.job) : ""), el("td", {}, e.memo || ""))));
  } catch (e) {
    $("#wallet-error").textContent = e.message;
    $("#wallet-error").hidden = false;
  }
}

async function verifyLedger() {
  const v = $("#wallet-verdict");
  v.textContent = "checking every entry…";
  v.className = "muted";
  try {
    const w = await api("/v1/wallet?verify=true");
    const ok = w.verify && w.verify.ok;
    v.textContent = ok ? `ledger verified (${w.verify.entries ?? "?"} entries)` : `ledger check failed: ${w.verify.error}`;
    v.className = ok ? "ok" : "error";
  } catch (e) {
    v.textContent = e.message;
    v.className = "error";
  }
}

// ---- policy --------------------------------------------------------------------------
async function showPolicy() {
  const err = $("#policy-error");
  err.hidden = true;
  let p;
  try { p = await api("/v1/policy"); } catch (e) { err.textContent = e.message; err.hidden = false; return; }
  $("#policy-file").textContent = p.file;
  const rows = [];
  for (const [k, v] of Object.entries(p)) {
    if (k === "file") continue;
    const simple = typeof v !== "object" || v === null;
    const note = el("div", { class: "error", "data-error-for": k });
    const input = el("input", { class: "field", name: k, value: simple ? String(v) : JSON.stringify(v) });
    if (!simple) input.setAttribute("readonly", "");
    const save = el("button", { type: "button", "data-save": k }, "Save");
    save.hidden = !simple;
    save.onclick = async () => {
      note.textContent = "";
      input.classList.remove("bad");
      try {
        await api("/v1/policy", { method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify({ [k]: input.value }) });
        note.className = "ok";
        note.textContent = "saved";
      } catch (e) {
        note.className = "error";
        note.textContent = e.message;
        if (!e.problem.field || e.problem.field === k) input.classList.add("bad");
      }
    };
    rows.push(el("tr", {}, el("td", {}, el("code", {}, k)), el("td", {}, input, note), el("td", {}, save)));
  }
  $("#policy-table tbody").replaceChildren(...rows);
}

// ---- node ----------------------------------------------------------------------------
async function showNode() {
  const n = await api("/v1/node");
  const dl = $("#node-info");
  dl.replaceChildren();
  for (const [k, v] of Object.entries(n)) {
    dl.append(el("dt", {}, k), el("dd", {}, typeof v === "object" ? JSON.stringify(v) : v));
  }
}

// ---- start ---------------------------------------------------------------------------
window.addEventListener("hashchange", route);
window.addEventListener("DOMContentLoaded", async () => {
  $("#submit-form").addEventListener("submit", submitJob);
  $("#wallet-verify").addEventListener("click", verifyLedger);
  $("#logout").addEventListener("click", async () => {
    await fetch("/logout", { method: "POST", credentials: "same-origin" });
    showLogin();
  });
  try {
    const n = await api("/v1/node");
    $("#whoami").textContent = `node ${short(n.id)} · ${(n.roles || []).join(", ")}`;
    route();
  } catch (_) {
    showLogin();
  }
});
