// flowkit monitor: list and flow pages, the graph renderer and the live updates.
// Plain JavaScript shipped with the package (no library, nothing fetched from a CDN).
"use strict";
const flowkitMonitor = (() => {
  const STATES = ["PENDING", "RUNNING", "SUCCESS", "FAILURE", "REVERTING", "REVERTED",
                  "REVERT_FAILURE", "RETRYING", "IGNORE"];
  const SVG = "http://www.w3.org/2000/svg";

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function svg(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    return node;
  }
  async function getJSON(url) {
    const response = await fetch(url, {credentials: "same-origin"});
    if (!response.ok) throw new Error(url + ": " + response.status);
    return response.json();
  }
  function stateBadge(state) {
    return el("span", {"class": "state s-" + state}, state);
  }
  function when(seconds) {
    return seconds ? new Date(seconds * 1000).toLocaleTimeString() : "";
  }

  // -- the list of flows ------------------------------------------------------
  async function listPage() {
    const stateFilter = document.getElementById("state-filter");
    const nameFilter = document.getElementById("name-filter");
    async function refresh() {
      const query = stateFilter.value ? "?state=" + encodeURIComponent(stateFilter.value) : "";
      const flows = await getJSON("/api/flows" + query);
      const body = document.querySelector("#flows tbody");
      body.replaceChildren();
      for (const flow of flows.reverse()) {
        if (nameFilter.value && !flow.name.includes(nameFilter.value)) continue;
        const row = el("tr", {"data-uuid": flow.uuid});
        const link = el("a", {href: "/flows/" + flow.uuid}, flow.name);
        row.append(el("td"), el("td"), el("td"), el("td"), el("td"));
        row.children[0].append(link);
        row.children[1].append(stateBadge(flow.state));
        row.children[2].textContent = Object.entries(flow.atoms).map(([s, n]) => n + " " + s).join(", ");
        row.children[3].textContent = flow.created_at || "";
        row.children[4].textContent = flow.uuid;
        body.append(row);
      }
    }
    // A refresh that fails (the server restarting, a slow database) is retried
    // by the next one; it must not break the page.
    const safeRefresh = () => refresh().catch((err) => console.warn("flows refresh failed:", err));
    stateFilter.addEventListener("change", safeRefresh);
    nameFilter.addEventListener("input", safeRefresh);
    await safeRefresh();
    setInterval(safeRefresh, 2000);
  }

  // -- one flow -----------------------------------------------------------------
  function drawGraph(container, graph) {
    const pad = 20;
    const root = svg("svg", {width: graph.width + 2 * pad, height: graph.height + 2 * pad,
                             viewBox: `${-pad} ${-pad} ${graph.width + 2 * pad} ${graph.height + 2 * pad}`});
    const where = {};
    for (const node of graph.nodes) where[node.id] = node;
    const edges = svg("g");
    for (const [source, target, decider] of graph.edges) {
      const a = where[source], b = where[target];
      if (!a || !b) continue;
      const line = svg("path", {"class": "edge" + (decider ? " decider" : ""),
                                d: `M${a.x},${a.y + 14} C${a.x},${(a.y + b.y) / 2} ${b.x},${(a.y + b.y) / 2} ${b.x},${b.y - 14}`});
      if (decider) line.append(Object.assign(svg("title"), {textContent: "decider: " + decider}));
      edges.append(line);
    }
    root.append(edges);
    const shapes = {};
    for (const node of graph.nodes) {
      const group = svg("g", {"class": "node", "data-atom": node.id});
      let shape;
      if (node.kind === "barrier") {
        shape = svg("circle", {cx: node.x, cy: node.y, r: 4, "class": "s-PENDING"});
      } else if (node.kind === "retry") {
        const x = node.x, y = node.y;
        shape = svg("polygon", {points: `${x - 60},${y} ${x - 48},${y - 14} ${x + 48},${y - 14} ${x + 60},${y} ${x + 48},${y + 14} ${x - 48},${y + 14}`,
                                "class": "s-PENDING"});
      } else {
        shape = svg("rect", {x: node.x - 60, y: node.y - 14, width: 120, height: 28, rx: 6, "class": "s-PENDING"});
      }
      shape.setAttribute("data-state", "PENDING");
      group.append(shape);
      if (node.kind !== "barrier") {
        const label = svg("text", {x: node.x, y: node.y + 4, "text-anchor": "middle"});
        label.textContent = node.id.length > 18 ? node.id.slice(0, 17) + "…" : node.id;
        group.append(label);
        group.append(Object.assign(svg("title"), {textContent: node.id}));
      }
      root.append(group);
      shapes[node.id] = shape;
    }
    container.replaceChildren(root);
    return shapes;
  }

  function colour(shapes, atoms) {
    for (const [name, state] of Object.entries(atoms)) {
      const shape = shapes[name];
      if (!shape) continue;
      shape.setAttribute("class", "s-" + state);
      shape.setAttribute("data-state", state);
    }
  }

  function showReport(report) {
    document.getElementById("flow-title").textContent = report.name + " (" + report.uuid + ")";
    const badge = document.getElementById("flow-state");
    badge.textContent = report.state;
    badge.className = "state s-" + report.state;
    const table = el("table");
    table.append(el("tr"));
    for (const head of ["atom", "state", "attempts", "duration", "result / failure"]) table.firstChild.append(el("th", {}, head));
    for (const atom of report.atoms) {
      const row = el("tr", {"data-atom": atom.name});
      const failure = atom.failure ? atom.failure.type + ": " + atom.failure.message : (atom.result || "");
      row.append(el("td", {}, atom.name));
      const cell = el("td");
      cell.append(stateBadge(atom.state));
      row.append(cell, el("td", {}, atom.attempts ?? ""),
                 el("td", {}, atom.duration === null ? "" : atom.duration.toFixed(3) + "s"),
                 el("td", {}, failure + (atom.cached ? " (from the cache)" : "") +
                                (atom.reverted ? " (" + atom.reverted + ")" : "")));
      table.append(row);
    }
    const total = report.duration === null ? "" : " in " + report.duration.toFixed(3) + "s";
    const summary = el("p", {}, Object.entries(report.totals).map(([s, n]) => n + " " + s).join(", ") + total);
    document.getElementById("report").replaceChildren(summary, table);

    const failures = document.getElementById("failures");
    failures.replaceChildren();
    for (const atom of report.atoms) {
      for (const [what, failure] of [["execute", atom.failure], ["revert", atom.revert_failure]]) {
        if (!failure) continue;
        failures.append(el("h3", {}, atom.name + " " + what + ": " + failure.type + ": " + failure.message));
        if (failure.traceback) failures.append(el("pre", {}, failure.traceback));
      }
    }
    if (!failures.children.length) failures.append(el("p", {}, "none"));

    // The event tree: each event under the one that caused it; a chain of single
    // consequences stays level, so only branches (a fan-out, a failure and the
    // reverts it caused) indent.
    const events = document.querySelector("#events tbody");
    events.replaceChildren();
    const bySeq = new Map((report.events || []).map(e => [e.seq, e]));
    const tree = report.event_tree || (report.events || []).map(e => ({seq: e.seq, depth: 0}));
    for (const {seq, depth} of tree) {
      const event = bySeq.get(seq);
      if (!event) continue;
      const row = el("tr", {"data-seq": seq, "data-depth": depth});
      const what = el("td", {"class": "tree", "style": "padding-left: " + (10 + 16 * Math.min(depth, 12)) + "px"},
                      (depth ? "\u21b3 " : "") + event.name + (event.kind === "flow" ? " (flow)" : " #" + event.attempt));
      const cell = el("td");
      cell.append(stateBadge(event.state));
      const cause = event.cause.event ? " (#" + event.cause.event + ")" : "";
      row.append(el("td", {}, event.seq), el("td", {}, event.run), what, cell,
                 el("td", {}, event.cause.text + cause));
      events.append(row);
    }
  }

  async function flowPage() {
    const uuid = decodeURIComponent(location.pathname.split("/").pop());
    const legend = document.getElementById("legend");
    for (const state of STATES) legend.append(stateBadge(state));
    const graph = await getJSON("/api/flows/" + uuid + "/graph");
    const shapes = drawGraph(document.getElementById("graph"), graph);
    let report = await getJSON("/api/flows/" + uuid);
    showReport(report);
    colour(shapes, Object.fromEntries(report.atoms.map(a => [a.name, a.state])));
    const stream = new EventSource("/api/flows/" + uuid + "/stream");
    let refreshing = false;
    stream.onmessage = async (message) => {
      const snapshot = JSON.parse(message.data);
      if (!snapshot) return;
      colour(shapes, snapshot.atoms);
      document.body.setAttribute("data-flow-state", snapshot.state);
      if (!refreshing) {
        refreshing = true;
        try {
          showReport(await getJSON("/api/flows/" + uuid));
        } catch (err) {
          console.warn("report refresh failed:", err);  // the next change tries again
        } finally {
          refreshing = false;
        }
      }
    };
  }

  return {listPage, flowPage, drawGraph, colour};
})();
