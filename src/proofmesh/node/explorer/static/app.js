// proofmesh explorer: vanilla JS, no dependencies, no network access beyond this node.
// Each tab polls its /api/explorer/<section> endpoint every 3 s while visible and
// re-renders only when the answer changed (so a click in the lineage graph survives).
"use strict";

const POLL_MS = 3000;
const API = "/api/explorer";
const state = { tab: "overview", last: {}, selected: null };

// ------------------------------------------------------------------ helpers
function esc(v) {
  return String(v === null || v === undefined ? "" : v)
    .replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}
function short(h) { h = String(h || ""); return h.length > 14 ? h.slice(0, 8) + "…" + h.slice(-4) : h; }
function addr(a) { return `<span class="mono" title="${esc(a)}">${esc(short(a))}</span>`; }
function pill(text, cls) { return `<span class="pill ${cls || ""}">${esc(text)}</span>`; }
function cards(items) {
  return `<div class="cards">${items.map(([k, v]) =>
    `<div class="card"><div class="k">${esc(k)}</div><div class="v">${esc(v)}</div></div>`).join("")}</div>`;
}
// rows: array of objects; cols: [[header, fn(row) -> html]]
function table(rows, cols, empty) {
  if (!rows || !rows.length) return `<div class="empty">${esc(empty || "none yet")}</div>`;
  const head = cols.map(c => `<th>${esc(c[0])}</th>`).join("");
  const body = rows.map(r => `<tr>${cols.map(c => `<td>${c[1](r)}</td>`).join("")}</tr>`).join("");
  return `<table><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table>`;
}
function notDeployed(what) {
  return `<div class="empty">The ${esc(what)} contract is not deployed on this network.</div>`;
}
async function get(path) {
  const r = await fetch(API + path, { cache: "no-store" });
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
  return r.json();
}

// ------------------------------------------------------------------ sections
const render = {
  async overview(el) {
    const o = await get("/overview");
    el.innerHTML = `<h2>Network</h2>` + cards([
      ["chain id", o.chain_id], ["backend", o.backend], ["head block", o.head],
      ["events indexed", o.events], ["transactions seen", o.transactions],
      ["contracts", Object.keys(o.contracts).length]]) +
      `<h3>This node</h3><div class="mono">${esc(o.node)} · ${esc(o.address || "no key")}</div>` +
      `<h3>Contracts</h3>` + table(Object.entries(o.contracts).map(([n, a]) => ({ n, a })),
        [["contract", r => esc(r.n)], ["address", r => `<span class="mono">${esc(r.a)}</span>`]], "nothing deployed") +
      `<h3>Recent events</h3><div id="recent-events"></div>`;
    const ev = await get("/events?limit=20");
    document.getElementById("recent-events").innerHTML = table(ev.events, [
      ["block", r => esc(r.block)], ["contract", r => esc(r.contract)], ["event", r => esc(r.event)],
      ["tx", r => addr(r.tx)]]);
  },

  async datasets(el) {
    const d = await get("/datasets");
    if (!d.deployed) { el.innerHTML = `<h2>Datasets</h2>` + notDeployed("data registry"); return; }
    const bps = v => v === null || v === undefined ? "–" : (v / 100).toFixed(1) + "%";
    const dedup = b => {
      if (!b.dedup) return `<span class="empty">manifest not available</span>`;
      const total = Object.values(b.dedup).reduce((x, y) => x + y, 0);
      return Object.entries(b.dedup).map(([k, v]) => pill(`${k} ${v}`, k === "kept" ? "ok" : "warn")).join("") +
        ` <span class="dim">of ${esc(total)}</span>`;
    };
    el.innerHTML = `<h2>Datasets</h2>` + cards([["sources", d.sources.length], ["batches", d.batches.length],
      ["unique records", d.batches.reduce((x, b) => x + Number(b.records), 0)]]) +
      `<h3>Sources</h3>` + table(d.sources, [["id", r => esc(r.id)], ["uri", r => esc(r.uri)],
        ["license", r => esc(r.license)], ["owner", r => addr(r.owner)], ["batches", r => esc(r.batches)],
        ["records", r => esc(r.records)], ["state", r => r.withdrawn ? pill("withdrawn", "bad") : pill("active", "ok")]],
        "no data sources registered yet") +
      `<h3>Batches</h3>` + table(d.batches, [["batch", r => esc(r.id)], ["source", r => esc(r.source)],
        ["contributor", r => addr(r.contributor)], ["root", r => addr(r.root)], ["records", r => esc(r.records)],
        ["tokens", r => esc(r.tokens)], ["dedup (manifest)", dedup],
        ["quality", r => bps(r.quality_bps)], ["dup. rate (attested)", r => bps(r.duplicate_bps)],
        ["dups proven", r => r.duplicates_proven ? pill(r.duplicates_proven, "bad") : "0"],
        ["status", r => pill(r.status, r.status === "finalized" ? "ok" : "warn")], ["reward", r => esc(r.reward)]],
        "no batches published yet");
  },

  async models(el) {
    const d = await get("/models");
    const body = document.getElementById("models-body");
    if (!d.deployed) { body.innerHTML = `<h2>Models</h2>` + notDeployed("model registry"); return; }
    body.innerHTML = `<h2>Models</h2>` + cards([["versions", d.versions.length],
      ["released", d.versions.filter(v => v.released).length]]) +
      `<h3>Lineage — click a version</h3>` +
      (d.versions.length ? "" : `<div class="empty">no model versions registered yet</div>`);
    drawLineage(d.versions, d.edges);
  },

  async jobs(el) {
    const d = await get("/jobs");
    if (!d.deployed) { el.innerHTML = `<h2>Fine-tuning jobs</h2>` + notDeployed("job market"); return; }
    el.innerHTML = `<h2>Fine-tuning jobs</h2>` + table(d.jobs, [
      ["job", r => esc(r.id)], ["status", r => pill(r.status, r.status === "settled" ? "ok" : r.status === "refunded" ? "bad" : "warn")],
      ["mode", r => esc(r.mode)], ["replicas", r => esc(r.replicas)], ["reward", r => esc(r.reward) + " MESH"],
      ["poster", r => addr(r.poster)],
      ["phases", r => r.phases.map(p => pill(p.event)).join("")],
      ["workers", r => r.workers.map(w => `${addr(w.worker)} ${w.committed ? pill("committed") : ""}${w.revealed ? pill("revealed") : ""}`).join("<br>")],
      ["payouts", r => r.payouts.map(p => `${addr(p.worker)} +${esc(p.amount)}`).join("<br>")],
      ["slashes", r => r.slashes.map(s => `${addr(s.worker)} ${pill("-" + s.amount + " " + s.reason, "bad")}`).join("<br>")],
    ], "no jobs posted yet");
  },

  async inference(el) {
    const d = await get("/inference");
    if (!d.deployed) { el.innerHTML = `<h2>Inference nodes</h2>` + notDeployed("inference registry"); return; }
    el.innerHTML = `<h2>Inference nodes</h2>` + table(d.nodes, [
      ["node", r => addr(r.address)], ["endpoint", r => esc(r.endpoint)], ["stake", r => esc(r.stake)],
      ["bond", r => esc(r.bond)], ["latency", r => r.latency_ms === null ? pill("down", "bad") : esc(r.latency_ms) + " ms"],
      ["epochs", r => esc(r.epochs)], ["receipts", r => esc(r.receipts)], ["ZK proofs", r => esc(r.proofs)],
      ["challenges", r => esc(r.challenges)], ["lost", r => esc(r.lost)],
      ["reputation", r => r.reputation === null ? "–" : esc((r.reputation * 100).toFixed(1) + "%")],
    ], "no inference nodes yet");
  },

  async devices(el) {
    const d = await get("/devices");
    if (!d.deployed) { el.innerHTML = `<h2>Devices</h2>` + notDeployed("device registry"); return; }
    const epochs = [...new Set(d.devices.flatMap(x => Object.keys(x.uptime)))].sort((a, b) => a - b);
    el.innerHTML = `<h2>Devices</h2>` + table(d.devices, [
      ["device", r => addr(r.device)], ["owner", r => addr(r.owner)], ["class", r => esc(r.class)],
      ["stake", r => esc(r.stake)], ["active", r => r.active ? pill("yes", "ok") : pill("no", "bad")],
      ...epochs.map(ep => [`uptime ep ${ep}`, r => esc(r.uptime[ep] === undefined ? "–" : r.uptime[ep])]),
      ["rewards", r => esc(r.rewards)],
    ], "no devices registered yet") +
      `<h3>Published epochs</h3>` + table(d.epochs, [["epoch", r => esc(r.epoch)], ["gateway", r => addr(r.gateway)],
        ["readings", r => esc(r.readings)], ["total uptime", r => esc(r.total_uptime)], ["root", r => addr(r.root)]]) +
      `<h3>Proven faults</h3>` + table(d.faults, [["epoch", r => esc(r.epoch)], ["gateway", r => addr(r.gateway)],
        ["kind", r => esc(r.kind)], ["burned", r => esc(r.burned)]], "none");
  },

  async tools(el) {
    const d = await get("/tools");
    if (!d.deployed) { el.innerHTML = `<h2>Tools</h2>` + notDeployed("tool registry"); return; }
    el.innerHTML = `<h2>Agent tools</h2>` + table(d.tools, [
      ["tool", r => esc(r.name)], ["provider", r => addr(r.provider)], ["price / call", r => esc(r.price) + " MESH"],
      ["endpoint", r => esc(r.endpoint)], ["calls", r => esc(r.calls ?? "–")], ["failures", r => esc(r.failures ?? "–")],
      ["disputes", r => esc(r.disputes ?? "–")], ["paid", r => esc(r.paid ?? "–")], ["score", r => esc(r.score ?? "–")],
      ["active", r => r.active ? pill("yes", "ok") : pill("retired", "bad")],
    ], "no tools published yet");
  },

  async token(el) {
    const d = await get("/token");
    if (!d.deployed) { el.innerHTML = `<h2>Token</h2>` + notDeployed("MESH token"); return; }
    const em = d.emission || { epochs: [], pools: [] };
    el.innerHTML = `<h2>MESH token</h2>` + cards([["total supply", d.supply], ["cap", d.cap], ["holders", d.holders],
      ["emission epochs", em.epochs.length]]) +
      `<h3>Emission pools</h3>` + table(em.pools, [["pool", r => esc(r.pool)], ["balance", r => esc(r.balance)],
        ["credited", r => esc(r.credited)], ["paid out", r => esc(r.paid)]], "emission not deployed") +
      `<h3>Top balances</h3>` + table(d.balances, [["address", r => `<span class="mono">${esc(r.address)}</span>`],
        ["balance", r => esc(r.balance)]]) +
      `<h3>Recent transfers</h3>` + table(d.transfers, [["block", r => esc(r.block)], ["from", r => addr(r.from)],
        ["to", r => addr(r.to)], ["amount", r => esc(r.amount)]]);
  },

  async nodes(el) {
    const d = await get("/nodes");
    if (!d.deployed) { el.innerHTML = `<h2>Nodes</h2>` + notDeployed("node registry"); return; }
    el.innerHTML = `<h2>Nodes</h2>` + table(d.nodes, [
      ["address", r => `<span class="mono">${esc(r.address)}</span>`], ["endpoint", r => esc(r.endpoint)],
      ["roles", r => r.roles.map(x => pill(x)).join("")], ["stake", r => esc(r.stake)], ["bonded", r => esc(r.bonded)],
      ["unbonding", r => esc(r.unbonding)], ["slashed", r => r.slashed === "0" ? "0" : pill(r.slashed, "bad")],
    ], "no nodes registered yet");
  },
};

// ------------------------------------------------------------------ lineage graph (SVG)
const SVG = "http://www.w3.org/2000/svg";
function svgEl(name, attrs, parent) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}

// Layered layout: depth = distance from a root version; versions at the same depth
// spread vertically. Good enough for lineage trees of a few hundred versions.
function drawLineage(versions, edges) {
  const svg = document.getElementById("lineage");
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  if (!versions.length) { svg.setAttribute("height", 40); return; }
  const byId = new Map(versions.map(v => [String(v.id), v]));
  const depth = new Map();
  const depthOf = v => {
    const key = String(v.id);
    if (depth.has(key)) return depth.get(key);
    depth.set(key, 0); // cycle guard
    const p = byId.get(String(v.parent));
    const d = p && String(v.parent) !== "0" ? depthOf(p) + 1 : 0;
    depth.set(key, d);
    return d;
  };
  const layers = [];
  versions.forEach(v => { const d = depthOf(v); (layers[d] = layers[d] || []).push(v); });
  const pos = new Map(), dx = 150, dy = 56, x0 = 50, y0 = 36;
  layers.forEach((layer, d) => layer.forEach((v, i) => pos.set(String(v.id), [x0 + d * dx, y0 + i * dy])));
  const rows = Math.max(...layers.map(l => l.length));
  svg.setAttribute("height", y0 * 2 + (rows - 1) * dy);
  svg.setAttribute("viewBox", `0 0 ${Math.max(400, x0 * 2 + (layers.length - 1) * dx + 80)} ${y0 * 2 + (rows - 1) * dy}`);
  edges.forEach(e => {
    const a = pos.get(String(e.from)), b = pos.get(String(e.to));
    if (!a || !b) return;
    const mx = (a[0] + b[0]) / 2;
    svgEl("path", { class: "edge", d: `M${a[0]},${a[1]} C${mx},${a[1]} ${mx},${b[1]} ${b[0]},${b[1]}` }, svg);
  });
  versions.forEach(v => {
    const [x, y] = pos.get(String(v.id));
    const g = svgEl("g", { class: "version" + (v.released ? " released" : "") +
      (String(state.selected) === String(v.id) ? " selected" : ""), "data-id": v.id,
      transform: `translate(${x},${y})` }, svg);
    svgEl("circle", { r: 16 }, g);
    svgEl("text", { x: -9, y: 4 }, g).textContent = "v" + v.id;
    svgEl("text", { x: -30, y: 30 }, g).textContent = (v.name || "").slice(0, 18);
    const t = svgEl("title", {}, g); t.textContent = `${v.name} v${v.id} (${v.kind})${v.released ? " — released" : ""}`;
    g.addEventListener("click", () => showVersion(v.id));
  });
}

async function showVersion(id) {
  state.selected = id;
  document.querySelectorAll("#lineage .version").forEach(g =>
    g.classList.toggle("selected", g.getAttribute("data-id") === String(id)));
  const panel = document.getElementById("detail");
  panel.classList.remove("hidden");
  panel.innerHTML = `<div class="empty">loading v${esc(id)}…</div>`;
  let m;
  try { m = await get(`/models/${id}`); } catch (e) { panel.innerHTML = `<div class="empty">${esc(e.message)}</div>`; return; }
  const rel = m.release.released ? pill("released", "ok") : pill(m.release.status || "not released", "warn");
  const dl = pairs => `<dl>${pairs.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${v}</dd>`).join("")}</dl>`;
  panel.innerHTML = `<h2 id="detail-title">${esc(m.name)} v${esc(m.id)} ${rel}</h2>` + dl([
    ["kind", esc(m.kind)], ["parent", m.parent && m.parent !== "0" ? "v" + esc(m.parent) : "– (root)"],
    ["children", m.children.length ? m.children.map(c => "v" + esc(c)).join(", ") : "–"],
    ["weights root", `<span class="mono">${esc(m.weights_root)}</span>`], ["owner", addr(m.owner)],
    ["config", `<span class="mono">${esc(m.config_cid || "–")}</span>`],
    ["registered", `block ${esc(m.block)}`],
  ]) +
    `<h3>Data (${m.data_batches.length} batch${m.data_batches.length === 1 ? "" : "es"})</h3>` +
    (m.data_batches.length ? m.data_batches.map(b => `<div class="mono">${esc(b)}</div>`).join("") : `<div class="empty">no data batches</div>`) +
    `<h3>Training job</h3>` +
    (m.job ? dl([["job", esc(m.job.id)], ["status", pill(m.job.status)], ["reward", esc(m.job.reward) + " MESH"],
      ["workers", m.job.workers.map(w => addr(w.worker)).join(", ") || "–"],
      ["slashes", m.job.slashes.length ? m.job.slashes.map(s => pill(s.reason, "bad")).join("") : "none"]])
      : `<div class="empty">${m.job_id && m.job_id !== "0" ? "job " + esc(m.job_id) + " (not on this network)" : "no job (registered directly)"}</div>`) +
    `<h3>Evaluations</h3>` + table(m.evaluations, [["request", r => esc(r.request)], ["metric", r => esc(r.metric)],
      ["attestations", r => esc(r.attestations.length) + "/" + esc(r.quorum)],
      ["median", r => r.final ? esc(r.median) : pill("pending", "warn")]], "not evaluated yet");
}

// ------------------------------------------------------------------ tabs & polling
function showTab(name) {
  state.tab = name;
  document.querySelectorAll("#tabs button").forEach(b => b.classList.toggle("active", b.dataset.tab === name));
  document.querySelectorAll(".tab").forEach(s => s.classList.toggle("active", s.id === "tab-" + name));
  if (location.hash !== "#" + name) history.replaceState(null, "", "#" + name);
  refresh(true);
}

async function refresh(force) {
  const name = state.tab;
  const el = document.getElementById("tab-" + name);
  const status = document.getElementById("status");
  try {
    // Re-render only when the section's data changed, so scroll and selection stay put.
    const key = JSON.stringify(await get(name === "overview" ? "/overview" : "/" + name).catch(() => null));
    if (force || key !== state.last[name]) {
      state.last[name] = key;
      await render[name](el);
    }
    status.className = "status ok";
    status.textContent = `live · ${new Date().toLocaleTimeString()}`;
  } catch (e) {
    status.className = "status bad";
    status.textContent = "node unreachable: " + e.message;
  }
}

document.querySelectorAll("#tabs button").forEach(b => b.addEventListener("click", () => showTab(b.dataset.tab)));
const initial = (location.hash || "").slice(1);
showTab(render[initial] ? initial : "overview");
setInterval(() => refresh(false), POLL_MS);
