// Lacuna lineage view: fetches /api/v1/lineage/graph and draws it as layered SVG, nodes
// coloured by tier with their tags; a click loads /api/v1/datasets/<key> into the side panel
// (classification, evidence, columns, neighbours, decisions). No libraries, no network
// besides this server. Every value from the API is inserted as text, never as markup.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const NODE_W = 220, NODE_H = 70, GAP_X = 56, GAP_Y = 24, PAD = 24;
const state = { key: null, selected: null, focus: null, depth: 3 };

function apiKey() {
  const hash = new URLSearchParams(location.hash.slice(1));
  if (hash.get("key")) {
    sessionStorage.setItem("lacuna-key", hash.get("key"));
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem("lacuna-key");
}

async function api(path) {
  const response = await fetch(path, { headers: { Authorization: "Bearer " + state.key } });
  const body = await response.json().catch(() => ({}));
  if (response.status === 401) {
    sessionStorage.removeItem("lacuna-key");
    document.getElementById("login").hidden = false;
  }
  if (!response.ok) {
    const message = body.error ? body.error.message : response.statusText;
    throw new Error(message);
  }
  return body;
}

function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function shortName(name) {
  const parts = name.replace(/\/+$/, "").split("/");
  return parts[parts.length - 1] || name;
}

function clip(text, max) {
  return text.length > max ? text.slice(0, max - 1) + "…" : text;
}

// Layers: longest path from the sources (Kahn's algorithm); nodes left inside cycles go one
// layer past the deepest placed node. Order inside a layer: barycentre of the parents.
function layout(nodes, edges) {
  const parents = new Map(nodes.map((n) => [n.key, []]));
  const children = new Map(nodes.map((n) => [n.key, []]));
  for (const e of edges) {
    parents.get(e.target).push(e.source);
    children.get(e.source).push(e.target);
  }
  const indegree = new Map(nodes.map((n) => [n.key, parents.get(n.key).length]));
  const layer = new Map();
  const queue = nodes.filter((n) => indegree.get(n.key) === 0).map((n) => n.key);
  queue.forEach((k) => layer.set(k, 0));
  while (queue.length) {
    const k = queue.shift();
    for (const c of children.get(k)) {
      layer.set(c, Math.max(layer.get(c) ?? 0, layer.get(k) + 1));
      indegree.set(c, indegree.get(c) - 1);
      if (indegree.get(c) === 0) queue.push(c);
    }
  }
  const deepest = Math.max(0, ...layer.values());
  for (const n of nodes) if (!layer.has(n.key)) layer.set(n.key, deepest + 1);
  const columns = [];
  for (const n of nodes) (columns[layer.get(n.key)] ||= []).push(n.key);
  const position = new Map();
  columns.forEach((keys, x) => {
    if (x > 0) {
      const centre = (k) => {
        const ys = parents.get(k).filter((p) => position.has(p)).map((p) => position.get(p).row);
        return ys.length ? ys.reduce((a, b) => a + b, 0) / ys.length : Infinity;
      };
      keys.sort((a, b) => centre(a) - centre(b) || a.localeCompare(b));
    } else {
      keys.sort();
    }
    keys.forEach((k, row) => position.set(k, { col: x, row }));
  });
  const tallest = Math.max(1, ...columns.map((c) => (c ? c.length : 0)));
  for (const [k, p] of position) {
    const count = columns[p.col].length;
    const offset = ((tallest - count) * (NODE_H + GAP_Y)) / 2;
    p.x = PAD + p.col * (NODE_W + GAP_X);
    p.y = PAD + offset + p.row * (NODE_H + GAP_Y);
  }
  return { position, width: PAD * 2 + columns.length * (NODE_W + GAP_X) - GAP_X,
           height: PAD * 2 + tallest * (NODE_H + GAP_Y) - GAP_Y };
}

function drawGraph(data) {
  const graph = document.getElementById("graph");
  graph.replaceChildren();
  const status = document.getElementById("status");
  if (!data.nodes.length) {
    status.textContent = "No datasets yet: post OpenLineage events to /api/v1/lineage.";
    return;
  }
  status.textContent = `${data.nodes.length} dataset(s), ${data.edges.length} edge(s)` +
    (data.truncated ? " (truncated)" : "") + (data.center ? ` around ${data.center}` : "");
  const { position, width, height } = layout(data.nodes, data.edges);
  // Natural size, shrunk by CSS (max-width: 100%) to fit the canvas: the whole graph is
  // visible at once; wide graphs get smaller rather than scrolled.
  graph.setAttribute("width", width);
  graph.setAttribute("height", height + 20);
  graph.setAttribute("preserveAspectRatio", "xMinYMin meet");
  graph.setAttribute("viewBox", `0 -20 ${width} ${height + 20}`);
  const defs = svg("defs");
  const marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: "10", refY: "5",
    markerWidth: "7", markerHeight: "7", orient: "auto-start-reverse" });
  marker.appendChild(svg("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#98a2b3" }));
  defs.appendChild(marker);
  graph.appendChild(defs);
  for (const e of data.edges) {
    const a = position.get(e.source), b = position.get(e.target);
    const x1 = a.x + NODE_W, y1 = a.y + NODE_H / 2, x2 = b.x, y2 = b.y + NODE_H / 2;
    const bend = Math.max(40, (x2 - x1) / 2);
    const path = svg("path", { class: "edge", "marker-end": "url(#arrow)",
      d: `M ${x1} ${y1} C ${x1 + bend} ${y1}, ${x2 - bend} ${y2}, ${x2} ${y2}`,
      "data-source": e.source, "data-target": e.target });
    path.appendChild(svg("title", {}, `${e.operation}${e.job ? " by " + e.job : ""}`));
    graph.appendChild(path);
    graph.appendChild(svg("text", { class: "edge-label", x: (x1 + x2) / 2, y: (y1 + y2) / 2 - 4,
      "text-anchor": "middle" }, e.operation));
  }
  for (const n of data.nodes) {
    const p = position.get(n.key);
    const g = svg("g", { class: `node tier-${n.tier}`, transform: `translate(${p.x},${p.y})`,
      "data-key": n.key, "data-tier": n.tier, tabindex: "0", role: "button" });
    g.appendChild(svg("title", {}, `${n.key}\n${n.tier}${n.tags.length ? " · " + n.tags.join(", ") : ""}`));
    g.appendChild(svg("rect", { width: NODE_W, height: NODE_H, rx: 8, ry: 8 }));
    g.appendChild(svg("text", { class: "name", x: 10, y: 21 }, clip(shortName(n.name), 28)));
    g.appendChild(svg("text", { class: "tier", x: 10, y: 39 },
      n.tier === "UNKNOWN" ? "unclassified" : n.tier));
    const tags = n.tags.length ? n.tags.join(" · ") : "no tags";
    g.appendChild(svg("text", { class: "tags", x: 10, y: 57 }, clip(tags, 29)));
    g.addEventListener("click", () => select(n.key));
    g.addEventListener("keydown", (ev) => { if (ev.key === "Enter") select(n.key); });
    graph.appendChild(g);
  }
  if (state.selected) markSelected(state.selected);
}

function markSelected(key) {
  for (const g of document.querySelectorAll(".node")) {
    g.classList.toggle("selected", g.dataset.key === key);
  }
}

function badge(tier) {
  return el("span", { class: `badge tier-${tier}` }, tier === "UNKNOWN" ? "unclassified" : tier);
}

function tagList(tags) {
  const span = el("span");
  for (const t of tags) span.appendChild(el("span", { class: "tag" }, t));
  return span;
}

function table(headers, rows) {
  const t = el("table");
  const head = el("tr");
  headers.forEach((h) => head.appendChild(el("th", {}, h)));
  t.appendChild(el("thead")).appendChild(head);
  const body = t.appendChild(el("tbody"));
  for (const r of rows) {
    const tr = el("tr");
    r.forEach((cell) => {
      const td = el("td");
      if (cell instanceof Node) td.appendChild(cell); else td.textContent = cell ?? "";
      tr.appendChild(td);
    });
    body.appendChild(tr);
  }
  return t;
}

function datasetLink(key) {
  const a = el("a", { class: "dataset-link", "data-key": key }, key);
  a.addEventListener("click", () => select(key));
  return a;
}

async function select(key) {
  state.selected = key;
  markSelected(key);
  const panel = document.getElementById("panel");
  panel.replaceChildren(el("p", { class: "hint" }, "Loading…"));
  let d;
  try {
    d = await api("/api/v1/datasets/" + encodeURIComponent(key));
  } catch (err) {
    panel.replaceChildren(el("p", { class: "hint" }, "Cannot load " + key + ": " + err.message));
    return;
  }
  const parts = [el("h2", { id: "dataset-name" }, d.name), el("div", { class: "key" }, d.key)];
  const summary = el("p", { id: "classification" });
  summary.appendChild(badge(d.tier));
  summary.appendChild(tagList(d.tags));
  parts.push(summary);
  const c = d.classification;
  parts.push(el("p", {}, `${c.layer} · confidence ${Number(c.confidence).toFixed(2)}`));
  if (c.reasoning) parts.push(el("p", { class: "hint" }, c.reasoning));
  parts.push(el("h3", {}, "Evidence"));
  parts.push(c.evidence.length
    ? table(["layer", "source", "about", "detail", "conf."], c.evidence.map((e) =>
        [e.layer, e.source, e.target, e.detail, Number(e.confidence).toFixed(2)]))
    : el("p", { class: "hint" }, "no evidence recorded"));
  const columns = Object.entries(d.column_classifications || {});
  if (columns.length) {
    parts.push(el("h3", {}, "Columns"));
    parts.push(table(["column", "tier", "tags", "layer", "from"], columns.map(([name, cc]) => [
      name, cc.tier, cc.tags.join(", "), cc.layer,
      (d.column_lineage[name] || []).map((s) => `${s.name}.${s.field}`).join(", "),
    ])));
  }
  for (const [title, keys] of [["Upstream", d.upstream_datasets], ["Downstream", d.downstream_datasets]]) {
    parts.push(el("h3", {}, title));
    const list = el("ul");
    keys.forEach((k) => list.appendChild(el("li")).appendChild(datasetLink(k)));
    parts.push(keys.length ? list : el("p", { class: "hint" }, "none"));
  }
  parts.push(el("h3", {}, "Decisions"));
  const decisions = el("div", { id: "decisions" });
  if (!d.decisions.length) decisions.appendChild(el("p", { class: "hint" }, "none recorded"));
  for (const dec of d.decisions) {
    const box = el("div", { class: "decision " + (dec.allow ? "allow" : "deny") });
    box.appendChild(el("span", { class: "verdict" }, dec.allow ? "ALLOW " : "DENY "));
    box.appendChild(document.createTextNode(
      `${dec.action} ${dec.source} → ${dec.destination || "—"} · ${dec.policy_id} · ${dec.decided_at.slice(0, 19)}`));
    if (!dec.allow) box.appendChild(el("pre", {}, dec.message));
    decisions.appendChild(box);
  }
  parts.push(decisions);
  panel.replaceChildren(...parts);
}

async function load() {
  const focus = state.focus ? `&dataset=${encodeURIComponent(state.focus)}` : "";
  try {
    drawGraph(await api(`/api/v1/lineage/graph?depth=${state.depth}${focus}`));
    if (state.focus && !state.selected) {
      const g = document.querySelector(".node");
      const centre = [...document.querySelectorAll(".node")].find(
        (n) => n.dataset.key === state.focus || n.dataset.key.endsWith("::" + state.focus));
      if (centre || g) select((centre || g).dataset.key);
    }
  } catch (err) {
    document.getElementById("status").textContent = "Cannot load the lineage graph: " + err.message;
  }
}

function start() {
  state.key = apiKey();
  const prefix = "/lineage/";
  if (location.pathname.startsWith(prefix) && location.pathname.length > prefix.length) {
    state.focus = decodeURIComponent(location.pathname.slice(prefix.length));
    document.getElementById("focus").value = state.focus;
  }
  document.getElementById("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    sessionStorage.setItem("lacuna-key", document.getElementById("api-key").value.trim());
    document.getElementById("login").hidden = true;
    state.key = apiKey();
    load();
  });
  document.getElementById("focus-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    state.focus = document.getElementById("focus").value.trim() || null;
    state.depth = Number(document.getElementById("depth").value);
    state.selected = null;
    load();
  });
  document.getElementById("show-all").addEventListener("click", () => {
    state.focus = null; state.selected = null;
    document.getElementById("focus").value = "";
    load();
  });
  if (!state.key) {
    document.getElementById("login").hidden = false;
    document.getElementById("status").textContent = "Waiting for an API key.";
    return;
  }
  load();
}

start();
