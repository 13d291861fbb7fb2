// The status page: polls the node's /api endpoints and redraws. Everything
// shown comes from the network (names, aliases, commit subjects): it is
// only ever put in the page as text, never as HTML.
"use strict";

const params = new URLSearchParams(location.search);
const refreshMs = Math.max(100, Number(params.get("refresh")) || 2000);

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k);
  return e;
}

function svg(tag, attrs, text) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(1)) + " " + units[i];
}

function ago(t) {
  let s = Math.max(0, Math.round((Date.now() - new Date(t).getTime()) / 1000));
  const d = Math.floor(s / 86400); s -= d * 86400;
  const h = Math.floor(s / 3600); s -= h * 3600;
  const m = Math.floor(s / 60); s -= m * 60;
  if (d) return d + "d " + h + "h";
  if (h) return h + "h " + m + "m";
  if (m) return m + "m " + s + "s";
  return s + "s";
}

function short(id) {
  const s = String(id);
  const colon = s.lastIndexOf(":");
  const key = s.slice(colon + 1);
  return key.length > 14 ? s.slice(0, colon + 1) + key.slice(0, 6) + "…" + key.slice(-6) : s;
}

// The server builds the command (with --root when the node's root is not
// the default); the rest is for a server that does not.
function cloneCommand(r) {
  if (r.clone_command) return r.clone_command;
  let dir = String(r.name || "").replace(/[^A-Za-z0-9._-]/g, "-").replace(/^[-.]+/, "");
  if (!dir) dir = "repo";
  return "menode repo clone --repo-id " + r.id + " --output " + dir;
}

function cloneCell(r) {
  const cmd = cloneCommand(r);
  const button = el("button", { type: "button", text: "copy", title: "copy the command" });
  button.addEventListener("click", () => {
    navigator.clipboard.writeText(cmd).then(() => { button.textContent = "copied"; }, () => { button.textContent = "select it"; });
  });
  return el("div", { class: "clone" }, el("code", { text: cmd, title: cmd }), button);
}

function badge(r) {
  let text = r.status;
  if (r.status === "syncing" && r.phase && r.phase !== "receiving") text += " · " + r.phase + " " + Math.floor(r.phase_percent || 0) + "%";
  else if (r.status === "syncing" && r.percent) text += " " + Math.floor(r.percent) + "%";
  return el("span", { class: "badge " + r.status, text: text });
}

async function getJSON(path) {
  const res = await fetch(path, { cache: "no-store" });
  if (!res.ok) throw new Error(path + ": " + res.status + " " + (await res.text()).trim());
  return res.json();
}

function setState(ok, text) {
  const s = document.getElementById("state");
  s.textContent = text;
  s.classList.toggle("stale", !ok);
}

function fill(id, text) { document.getElementById(id).textContent = text; }

function renderNode(st) {
  document.title = "menode " + (st.alias || short(st.id));
  fill("alias", st.alias || "");
  fill("node-id", st.id);
  fill("node-addrs", (st.listen || []).join(", ") || "none");
  const pm = st.port_mapping;
  fill("node-portmap", pm ? pm.external_addr + " (" + pm.protocol + "), lease until " +
    new Date(pm.lease_expires_at).toLocaleTimeString() + ((st.confirmed_addrs || []).includes(pm.external_addr) ? ", confirmed" : ", not confirmed yet") : "none");
  fill("node-uptime", ago(st.started));
  fill("node-version", st.version);
  const t = st.transfers || {};
  fill("node-transfers", st.fetching + " fetching, " + st.serving + " serving; " + bytes(st.bytes_received) + " received, " +
    bytes(st.bytes_sent) + " sent; " + (t.fetches_done || 0) + " fetched, " + (t.serves_done || 0) + " served since start");
  const g = st.gossip || {};
  const acc = Object.values(g.accepted || {}).reduce((a, b) => a + b, 0);
  fill("node-gossip", (g.held || 0) + " announcements held (" + bytes(g.held_bytes || 0) + "); " + acc + " accepted, " +
    (g.duplicates || 0) + " duplicates since start");
}

function renderPeers(peers) {
  const body = document.querySelector("#peers tbody");
  const live = peers.filter(p => p.connected);
  body.replaceChildren(...live.map(p => el("tr", { "data-peer": p.id },
    el("td", { text: p.alias || "—" }),
    el("td", {}, el("code", { text: short(p.id), title: p.id })),
    el("td", { text: p.direction }),
    el("td", { text: p.since ? ago(p.since) : "" }),
    el("td", { text: p.rtt ? (p.rtt / 1e6).toFixed(p.rtt < 1e7 ? 2 : 0) + " ms" : "—" }),
    el("td", { text: bytes(p.bytes_sent || 0) }),
    el("td", { text: bytes(p.bytes_received || 0) }),
    el("td", { text: (p.addresses || []).join(", ") }))));
  if (!live.length) body.append(el("tr", {}, el("td", { colspan: 8, class: "empty", text: "No connected peer." })));
}

function renderRepos(repos) {
  const body = document.querySelector("#repos tbody");
  body.replaceChildren(...repos.map(r => el("tr", { "data-repo": r.id, "data-status": r.status },
    el("td", {}, el("a", { href: "/repo/" + encodeURIComponent(r.id), text: r.name || short(r.id) })),
    el("td", {}, badge(r)),
    el("td", { text: Object.keys(r.refs || {}).length }),
    el("td", { text: (r.seeders || []).length }),
    el("td", { text: bytes(r.size || 0) }),
    el("td", {}, cloneCell(r)))));
  if (!repos.length) body.append(el("tr", {}, el("td", { colspan: 6, class: "empty", text: "No repository yet." })));

  const box = document.getElementById("transfers");
  const running = repos.filter(r => r.status === "syncing");
  box.replaceChildren(...running.map(r => {
    // The phase the node reports (building on the seeder, receiving,
    // indexing, applying), each with its percentage: of the bundle while
    // receiving, of git's step otherwise.
    const phase = r.phase || "receiving";
    const pct = phase === "receiving" ? (r.percent || 0) : (r.phase_percent || 0);
    const known = pct > 0;
    const f = el("div", { class: "fill" });
    f.style.width = (known ? Math.min(100, pct) : 100) + "%";
    let detail = phase;
    if (r.step) detail += " · " + r.step;
    if (phase === "receiving" || phase === "building") detail += " · " + bytes(r.received || 0);
    detail += known ? " · " + pct.toFixed(1) + "%" : (phase === "receiving" ? " · size not known yet" : "");
    return el("div", { class: "transfer", "data-repo": r.id, "data-phase": phase, "data-percent": known ? pct.toFixed(2) : "", "data-received": r.received || 0 },
      el("div", { class: "label" },
        el("span", { text: r.name || short(r.id) }),
        el("span", { class: "phase", text: detail })),
      el("div", { class: "bar" + (known ? "" : " unknown") }, f));
  }));
  if (!running.length) box.append(el("p", { class: "empty", text: "No transfer running." }));
}

// renderMap draws this node in the middle, connected peers around it,
// nodes known only by gossip further out, and repositories on the rim,
// each joined to the nodes that serve it.
function renderMap(st, peers, repos) {
  const map = document.getElementById("map");
  const W = 400, H = 260, cx = W / 2, cy = H / 2;
  const nodes = new Map([[st.id, { x: cx, y: cy, cls: "self", label: st.alias || "this node" }]]);
  const live = peers.filter(p => p.connected), known = peers.filter(p => !p.connected && p.id !== st.id);
  const ring = (list, rx, ry, cls, phase) => list.forEach((p, i) => {
    const a = phase + 2 * Math.PI * i / Math.max(1, list.length);
    nodes.set(p.id, { x: cx + rx * Math.cos(a), y: cy + ry * Math.sin(a), cls: cls, label: p.alias || short(p.id) });
  });
  ring(live, 95, 70, "peer", -Math.PI / 2);
  ring(known, 160, 105, "known", -Math.PI / 2 + 0.4);
  const kids = [];
  for (const p of live) {
    const n = nodes.get(p.id);
    kids.push(svg("line", { class: "edge", x1: cx, y1: cy, x2: n.x, y2: n.y }));
  }
  repos.slice(0, 24).forEach((r, i) => {
    const a = -Math.PI / 2 + 2 * Math.PI * (i + 0.5) / Math.max(1, Math.min(24, repos.length));
    const x = cx + 185 * Math.cos(a), y = cy + 118 * Math.sin(a);
    const servers = new Set(r.seeders || []);
    if (r.status === "synced" || r.status === "local") servers.add(st.id);
    for (const s of servers) {
      const n = nodes.get(s);
      if (n) kids.push(svg("line", { class: "edge serves", x1: n.x, y1: n.y, x2: x, y2: y }));
    }
    kids.push(svg("rect", { class: "repo", x: x - 5, y: y - 5, width: 10, height: 10, rx: 2 }, undefined));
    kids.push(svg("text", { x: x, y: y + 16, "text-anchor": "middle" }, String(r.name || short(r.id)).slice(0, 18)));
  });
  for (const n of nodes.values()) {
    kids.push(svg("circle", { class: n.cls, cx: n.x, cy: n.y, r: n.cls === "self" ? 11 : 8 }));
    kids.push(svg("text", { x: n.x, y: n.y - 13, "text-anchor": "middle" }, String(n.label).slice(0, 18)));
  }
  map.replaceChildren(...kids);
}

async function refreshNode() {
  try {
    const [st, peers, repos] = await Promise.all([getJSON("/api/status"), getJSON("/api/peers"), getJSON("/api/repos")]);
    renderNode(st);
    renderPeers(peers.peers || []);
    renderRepos(repos.repos || []);
    renderMap(st, peers.peers || [], repos.repos || []);
    setState(true, "updated " + new Date().toLocaleTimeString());
  } catch (e) {
    setState(false, "not updated: " + e.message);
  }
}

async function refreshRepo() {
  const id = decodeURIComponent(location.pathname.split("/")[2] || "");
  try {
    const [r, log] = await Promise.all([getJSON("/api/repos/" + encodeURIComponent(id)), getJSON("/api/repos/" + encodeURIComponent(id) + "/commits")]);
    document.title = "menode " + (r.name || short(r.id));
    fill("repo-name", r.name || short(r.id));
    fill("repo-id", r.id);
    fill("repo-description", r.description || "—");
    fill("repo-creator", r.creator);
    document.getElementById("repo-status").replaceChildren(badge(r), r.sync_error ? " " + r.sync_error : "");
    fill("repo-size", bytes(r.size || 0));
    document.getElementById("repo-clone").replaceChildren(cloneCell(r));
    const names = [...new Set([...Object.keys(r.refs || {}), ...Object.keys(r.mirror_refs || {})])].sort();
    document.querySelector("#refs tbody").replaceChildren(...names.map(n => el("tr", { "data-ref": n },
      el("td", { text: n }),
      el("td", {}, el("code", { text: (r.refs[n] || "—").slice(0, 12) })),
      el("td", {}, el("code", { text: ((r.mirror_refs || {})[n] || "—").slice(0, 12) })))));
    const seeders = document.getElementById("seeders");
    seeders.replaceChildren(...(r.seeders || []).map(s => el("li", {}, el("code", { text: s }))));
    if (!(r.seeders || []).length) seeders.append(el("li", { class: "empty", text: "none known" }));
    document.querySelector("#commits tbody").replaceChildren(...(log.commits || []).map(c => el("tr", { "data-commit": c.hash },
      el("td", {}, el("code", { text: c.hash.slice(0, 10), title: c.hash })),
      el("td", { text: c.subject }),
      el("td", { text: c.author }),
      el("td", { text: new Date(c.date).toLocaleString() }))));
    if (!log.mirror_ready) document.querySelector("#commits tbody").append(el("tr", { class: "empty" }, el("td", { colspan: "4", text: "mirror not ready" })));
    setState(true, "updated " + new Date().toLocaleTimeString());
  } catch (e) {
    setState(false, "not updated: " + e.message);
  }
}

function loop(fn) {
  const tick = async () => { await fn(); setTimeout(tick, refreshMs); };
  tick();
}

loop(document.body.dataset.page === "repo" ? refreshRepo : refreshNode);
