// flowkit monitor: list and flow pages, the graph renderer and the live updates.
// Plain JavaScript shipped with the package; the graph is drawn by the vendored
// Cytoscape.js (static/vendor/), nothing is fetched from a CDN.
"use strict";
const flowkitMonitor = (() => {
  const STATES = ["PENDING", "RUNNING", "SUCCESS", "FAILURE", "REVERTING", "REVERTED",
                  "REVERT_FAILURE", "RETRYING", "IGNORE"];

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  // A name or a text another process wrote, isolated from the page's own text beside it: a
  // bidi control in it (U+202E, RIGHT-TO-LEFT OVERRIDE) drew the uuid after a flow's name
  // backwards, and "(flow)" as "(wolf)". <bdi> isolates it and leaves it as it is.
  function bdi(text) {
    return el("bdi", {}, text);
  }
  // The same for plain text (the tab's title has no elements): FSI ... PDI around a text
  // holding a bidi control or a right-to-left letter; any other is left as it is.
  const BIDI = /[\u0590-\u08ff\u200e\u200f\u202a-\u202e\u2066-\u2069\ufb1d-\ufdff\ufe70-\ufefc]/;
  function isolated(text) {
    return BIDI.test(text) ? "\u2068" + text + "\u2069" : text;
  }
  // A sentence the monitor's event log made with names in it ("'bad' completed"): a bidi
  // control in a name would reorder the rest of the sentence, so it is shown escaped there
  // (\u202e), as the command line shows it.
  const CONTROLS = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
  function prose(text) {
    return text.replace(CONTROLS, (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
  }
  async function getJSON(url) {
    return (await fetchJSON(url)).data;
  }
  // The JSON answer and its headers (the flow list's paging links are in "Link").
  // A refusal throws an Error whose .status is the HTTP status (none: no answer at all).
  async function fetchJSON(url) {
    let response;
    try {
      response = await fetch(url, {credentials: "same-origin"});
    } catch (err) {
      throw new Error("the monitor does not answer (" + err.message + ")");
    }
    if (!response.ok) {
      // The server's one-line {"error"} (503: the database does not answer) says more than a status.
      let detail = "";
      try { detail = (await response.json()).error || ""; } catch (err) { detail = ""; }
      const refused = new Error(detail || url + ": " + response.status);
      refused.status = response.status;
      throw refused;
    }
    return {data: await response.json(), headers: response.headers};
  }
  // Milliseconds to wait before the next try to reach the monitor again: doubling, then the
  // last one over and over (bounded), so a monitor stopped for long is not asked every
  // second by every open page, and one back soon is found soon.
  const BACKOFF = [1000, 2000, 4000, 8000, 10000];
  function backoff(tries) {
    return BACKOFF[Math.min(tries, BACKOFF.length - 1)];
  }
  function pause(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
  }
  function inSeconds(ms) {
    return Math.round(ms / 1000) + " s";
  }
  // body[data-live]: "yes" while what the page shows is current, "no" while it may be stale
  // (the monitor stopped, or cannot read its database: the CSS dims it, so it is not read as
  // live), "ended" once the flow finished (nothing more will come).
  function setLive(value) {
    document.body.setAttribute("data-live", value);
    retitle();
  }
  // The tab's title: what the page shows, marked "(not live)" while that may be stale, since
  // an operator with several tabs open reads the state in the tab, not in the banner.
  let title = null;
  function setTitle(text) {
    title = text;
    retitle();
  }
  function retitle() {
    if (title === null) return;
    const stale = document.body.getAttribute("data-live") === "no";
    document.title = (stale ? "(not live) " : "") + title + " - flowkit monitor";
  }
  // rel -> the query string of that link of a "Link" header ("next": older flows, "prev": newer).
  function links(header) {
    const found = {};
    for (const part of (header || "").split(",")) {
      const match = part.match(/<[^>?]*\?([^>]*)>\s*;\s*rel="(\w+)"/);
      if (match) found[match[2]] = match[1];
    }
    return found;
  }
  // The banner under the header: why what is shown may be stale; hidden when all is well.
  function showStatus(text) {
    const banner = document.getElementById("status");
    if (!banner) return;
    banner.textContent = text || "";
    banner.hidden = !text;
  }
  function stateBadge(state) {
    return el("span", {"class": "state s-" + state}, state);
  }
  function when(seconds) {
    return seconds ? new Date(seconds * 1000).toLocaleTimeString() : "";
  }

  // -- the list of flows ------------------------------------------------------
  // One page of PAGE flows at a time, newest first. The page's place is in the
  // address (?before=UUID or ?after=UUID, with the filters), so reloading or
  // coming back from a flow shows the same page; the first page follows new flows.
  const PAGE = 100;
  const EVERY = 2000;  // ms between two reads of the list while the monitor answers

  // How many flows the filters keep, in words: "1 flow", "12 FAILURE flows whose name
  // contains “shop”", "100 of 501 flows" (a page of more), "no flows".
  function countText(shown, total, state, name) {
    const noun = (state ? state + " " : "") + (total === 1 ? "flow" : "flows");
    const named = name ? " whose name contains \u201c" + name + "\u201d" : "";
    const count = total === 0 ? "no" : (total > shown ? shown + " of " + total : String(total));
    return count + " " + noun + named;
  }

  // The row that stands for an empty list: why it is empty and what to do about it.
  // "first": the address of the newest flows the filters keep (for a page left empty by
  // a cursor: the flows next to it were deleted).
  function emptyRow(filtered, total, first) {
    const cell = el("td", {"colspan": "5", "class": "empty"});
    if (total > 0) {
      cell.append("No flow on this page. ");
      cell.append(el("a", {href: first, id: "first-page"}, "Show the newest flows"));
    } else if (filtered) {
      cell.append("No flow matches these filters. ");
      cell.append(el("a", {href: "/", id: "clear-filters"}, "Show every flow"));
    } else {
      cell.append("No flows yet: a flow run with this monitor's database appears here by itself.");
    }
    const row = el("tr");
    row.append(cell);
    return row;
  }

  async function listPage() {
    const stateFilter = document.getElementById("state-filter");
    const nameFilter = document.getElementById("name-filter");
    const here = new URLSearchParams(location.search);
    stateFilter.value = here.get("state") || "";
    nameFilter.value = here.get("name") || "";
    let cursor = ["before", "after"].filter(k => here.get(k)).map(k => [k, here.get(k)])[0] || null;
    function address(extra) {
      const query = new URLSearchParams();
      if (stateFilter.value) query.set("state", stateFilter.value);
      if (nameFilter.value) query.set("name", nameFilter.value);
      for (const [k, v] of extra) query.set(k, v);
      return query;
    }
    function pageLink(id, query) {
      const link = document.getElementById(id);
      link.hidden = !query;
      if (!query) return;
      const target = new URLSearchParams(query);
      target.delete("limit");
      link.href = "/?" + target.toString();
    }
    // Each read is numbered, and only an answer to the latest one is drawn: typing a name
    // sends a read per key, and an earlier, slower answer drawn last showed the flows of
    // a filter no longer typed.
    let asked = 0;
    let lastRead = null;  // what the list drawn was drawn from
    async function refresh() {
      const mine = ++asked;
      const state = stateFilter.value, name = nameFilter.value;
      const query = address(cursor ? [cursor] : []);
      query.set("limit", PAGE);
      const {data: flows, headers} = await fetchJSON("/api/flows?" + query.toString());
      if (mine !== asked) return;  // a newer read was asked for meanwhile: its answer is drawn
      // Drawn again only when something changed: a redraw every 2 s took the keyboard focus
      // off the link a user had tabbed to, and undid a selection (a uuid being copied).
      const read = JSON.stringify([flows, headers.get("Link"), headers.get("X-Total-Count"), state, name]);
      if (read === lastRead) return;
      lastRead = read;
      const body = document.querySelector("#flows tbody");
      const focused = body.contains(document.activeElement) ? document.activeElement.getAttribute("href") : null;
      body.replaceChildren();
      for (const flow of flows.reverse()) {
        const row = el("tr", {"data-uuid": flow.uuid});
        const link = el("a", {href: "/flows/" + encodeURIComponent(flow.uuid)}, flow.name);
        row.append(el("td"), el("td"), el("td"), el("td"), el("td"));
        row.children[0].append(link);
        row.children[1].append(stateBadge(flow.state));
        row.children[2].textContent = Object.entries(flow.atoms).map(([s, n]) => n + " " + s).join(", ");
        // The viewer's local time to the second; the exact ISO time on hover.
        row.children[3].textContent = flow.created_at ? new Date(flow.created_at).toLocaleString() : "";
        if (flow.created_at) row.children[3].title = flow.created_at;
        row.children[4].textContent = flow.uuid;
        body.append(row);
      }
      const pages = links(headers.get("Link"));
      pageLink("older", pages.next);
      pageLink("newer", pages.prev);
      const total = Number(headers.get("X-Total-Count") || flows.length);
      if (!flows.length) {
        const filters = address([]).toString();
        body.append(emptyRow(Boolean(state || name), total, filters ? "/?" + filters : "/"));
      }
      if (focused !== null) {  // the same flow's link keeps the focus, if it is still listed
        const again = [...body.querySelectorAll("a")].find(a => a.getAttribute("href") === focused);
        if (again) again.focus();
      }
      const count = countText(flows.length, total, state, name);
      document.getElementById("page-info").textContent = count;
      // The tab says what it lists: an operator keeps several open.
      setTitle(count);
    }
    // A read that fails (the monitor stopped or restarting, a slow database) must not
    // break the page: it keeps the last list, says why, and tries again, less often the
    // longer it fails (bounded); the first answer again puts it back to every 2 s.
    let failures = 0;
    let timer = null;
    async function safeRefresh() {
      clearTimeout(timer);
      const mine = asked + 1;
      let delay = EVERY;
      try {
        await refresh();
        failures = 0;
        if (mine === asked) { showStatus(""); setLive("yes"); }
      } catch (err) {
        delay = backoff(failures++);
        if (mine === asked) {
          setLive("no");
          showStatus("cannot list the flows (showing the last list read): " + err.message +
                     "; trying again in " + inSeconds(delay));
        }
      }
      if (mine === asked) timer = setTimeout(safeRefresh, delay);
    }
    // A new filter starts again from the newest flows.
    const refilter = () => {
      cursor = null;
      const query = address([]).toString();
      history.replaceState(null, "", query ? "/?" + query : "/");
      return safeRefresh();
    };
    stateFilter.addEventListener("change", refilter);
    nameFilter.addEventListener("input", refilter);
    await safeRefresh();
  }

  // -- one flow -----------------------------------------------------------------
  // The graph is drawn by Cytoscape.js (vendored in static/vendor/, MIT), at the
  // positions the server's layered layout chose ("preset" layout); each node's
  // state is node data, and the stylesheet maps a state to its colour.
  const COLOURS = {PENDING: "#e3e6eb", RUNNING: "#7ab8ff", SUCCESS: "#7fd18b", FAILURE: "#ff7b7b",
                   REVERTING: "#ffc46b", REVERTED: "#d5b8ff", REVERT_FAILURE: "#d12f2f",
                   RETRYING: "#ffe36b", IGNORE: "#f6f7f9", SUSPENDED: "#c9ced8"};
  const SHAPES = {task: "round-rectangle", retry: "hexagon", barrier: "ellipse"};

  function graphStyle() {
    const style = [
      {selector: "node", style: {
        "shape": (n) => SHAPES[n.data("kind")] || "round-rectangle",
        "width": 120, "height": 28, "label": "data(label)", "font-size": 12,
        "text-valign": "center", "text-halign": "center", "color": "#1d2330",
        // A shortened name of wide letters still ran out of its node: cut to the node's width.
        "text-wrap": "ellipsis", "text-max-width": 104,
        "border-width": 1.2, "border-color": "#4a5263", "background-color": COLOURS.PENDING}},
      {selector: 'node[kind = "barrier"]', style: {"width": 8, "height": 8}},
      {selector: "edge", style: {
        "width": 1.4, "line-color": "#9aa3b2", "curve-style": "bezier",
        "target-arrow-shape": "triangle", "target-arrow-color": "#9aa3b2", "arrow-scale": 0.8}},
      {selector: "edge[decider]", style: {"line-style": "dashed", "line-dash-pattern": [5, 4]}},
    ];
    for (const [state, fill] of Object.entries(COLOURS)) {
      style.push({selector: `node[state = "${state}"]`, style: {"background-color": fill}});
    }
    style.push({selector: 'node[state = "REVERT_FAILURE"]', style: {"color": "#fff"}});
    // A big graph's groups (summary.js, loaded by the flow page only), after the states' rules.
    if (typeof flowkitSummary !== "undefined") style.push(...flowkitSummary.style());
    return style;
  }

  // A node's label: a barrier has none; a long name is shortened (the full one shows on hover).
  function nodeLabel(node) {
    return node.kind === "barrier" ? "" : (node.id.length > 18 ? node.id.slice(0, 17) + "\u2026" : node.id);
  }
  // Cytoscape's elements for the server's drawing of the graph.
  function graphElements(graph) {
    const elements = [];
    for (const node of graph.nodes) {
      elements.push({group: "nodes", data: {id: node.id, kind: node.kind, label: nodeLabel(node), state: "PENDING"},
                     position: {x: node.x, y: node.y}});
    }
    const ids = new Set(graph.nodes.map(n => n.id));
    graph.edges.forEach(([source, target, decider], i) => {
      if (!ids.has(source) || !ids.has(target)) return;
      const data = {id: "edge-" + i, source, target};
      if (decider) data.decider = decider;
      elements.push({group: "edges", data});
    });
    return elements;
  }
  function fitHeight(container, graph) {
    container.style.height = Math.min(Math.max(graph.height + 60, 160), 640) + "px";
  }

  // Draw the server's graph into `container`: the whole graph, or a big graph's summary
  // (graph.summary) whose groups are fetched from `api` + "/graph?group=" when clicked.
  function drawGraph(container, graph, api) {
    fitHeight(container, graph);
    const cy = cytoscape({
      container, elements: graph.summary ? [] : graphElements(graph), style: graphStyle(),
      layout: {name: "preset", fit: true, padding: 20},
      minZoom: 0.2, maxZoom: 1.5, autoungrabify: true, boxSelectionEnabled: false,
    });
    cy.scratch("flowkit", {version: graph.version, drawing: graph.drawing, api, view: null});
    if (graph.summary) summarise(cy, graph, {}, null);
    cy.on("tap", "node", (e) => {
      const view = cy.scratch("flowkit").view;
      if (view) view.tapped(e.target);
    });
    // Full names and deciders on hover (labels are shortened to fit a node).
    cy.on("mouseover", "node", (e) => { container.title = e.target.data("title") || e.target.id(); });
    cy.on("mouseover", "edge", (e) => {
      container.title = e.target.data("decider") ? "decider: " + e.target.data("decider") : "";
    });
    cy.on("mouseout", () => { container.title = ""; });
    // A summary's group buttons (keyboard access, summary.js) follow their nodes.
    cy.on("viewport resize", () => {
      const view = cy.scratch("flowkit").view;
      if (view) view.place();
    });
    return cy;
  }

  // The flow grew (a spawned sub-flow, a link the event log learned): draw the new
  // graph in place, its nodes in the states last seen; the view is fitted again
  // unless the user panned or zoomed by hand. A new version of the same drawing (a
  // loop's next iteration, a link inside a summary's group) is not drawn again: the
  // server's "drawing" says what a graph draws, and asked with the one the page has,
  // it answers {"unchanged": true} in a few bytes instead of the whole graph.
  function redrawGraph(cy, graph, atoms, fit) {
    const drawn = cy.scratch("flowkit");
    if (graph.unchanged || graph.drawing === drawn.drawing) {
      cy.scratch("flowkit", {...drawn, version: graph.version});
      if (drawn.view) drawn.view.refresh();  // its open groups may have changed all the same
      return false;
    }
    cy.batch(() => {
      cy.elements().remove();
      if (!graph.summary) cy.add(graphElements(graph));
    });
    cy.scratch("flowkit", {...drawn, version: graph.version, drawing: graph.drawing, view: null});
    fitHeight(cy.container(), graph);
    cy.resize();
    // A summary drawn again keeps the groups that were open, if they still are groups.
    if (graph.summary) summarise(cy, graph, atoms, drawn.view);
    else {
      if (typeof flowkitSummary !== "undefined") flowkitSummary.leave(cy.container());
      colour(cy, atoms);
    }
    if (fit) cy.fit(undefined, 20);
    return true;
  }

  // Draw the summary `graph` in `cy` (emptied), atoms in the states `atoms` says; `before`: the
  // view it replaces (its open groups are opened again, the states it knew kept).
  function summarise(cy, graph, atoms, before) {
    const view = flowkitSummary.view(cy, graph, before, {getJSON, nodeLabel});
    cy.scratch("flowkit", {...cy.scratch("flowkit"), view});
    view.update(atoms);
    view.render();
    cy.fit(undefined, 20);
    return view;
  }

  function colour(cy, atoms) {
    const view = cy.scratch("flowkit").view;
    if (view) {
      view.update(atoms);
      return;
    }
    cy.batch(() => {
      for (const [name, state] of Object.entries(atoms)) {
        const node = cy.getElementById(name);
        if (node.nonempty()) node.data("state", state);
      }
    });
  }

  // A graph too big to fit the box (a long flow, at the smallest zoom) shows its
  // middle, wherever the run is: keep what runs (or reverts) in view instead,
  // until the user pans or zooms by hand.
  function followRun(cy) {
    const box = cy.elements().renderedBoundingBox();
    if (box.w <= cy.width() && box.h <= cy.height()) return;
    const active = cy.nodes('[state = "RUNNING"], [state = "REVERTING"]');
    if (active.nonempty()) cy.center(active);
  }

  // A revert said of an atom that ran again since (a retry) is an earlier attempt's:
  // "(reverted)" next to SUCCESS read as if its work had been undone. Such an atom says
  // what its earlier attempts came to instead, in the text report's words (the server's).
  function revertNote(atom) {
    const undoing = ["REVERTING", "REVERTED", "REVERT_FAILURE"].includes(atom.state);
    if (undoing) return atom.reverted ? " (" + atom.reverted + ")" : "";
    return atom.earlier_attempts ? " (earlier attempts: " + atom.earlier_attempts + ")" : "";
  }

  // Milliseconds between two reads of a flow's report while it runs: every change for a
  // flow of up to REPORT_SMALL atoms, as before; past that, a read per REPORT_ATOMS atoms'
  // worth of seconds (2 s for 2,000 atoms, 10 s for 10,000), up to REPORT_MAX.
  const REPORT_SMALL = 500, REPORT_ATOMS = 1000, REPORT_MAX = 10000;
  function reportEvery(report) {
    const size = report && report.atoms ? report.atoms.length : 0;
    if (size <= REPORT_SMALL) return 0;
    return Math.min(REPORT_MAX, 1000 * Math.ceil(size / REPORT_ATOMS));
  }
  // The state badges of the report's table, from a snapshot's {name: state}: they follow the
  // live stream while the report itself is read again only now and then (reportEvery).
  let reportRows = new Map();  // atom name -> its row in the report's table, once drawn (showReport)
  const liveStates = new Map();  // atom name -> the state the stream last said: a row drawn later shows it
  function markStates(atoms) {
    for (const [name, state] of Object.entries(atoms)) {
      liveStates.set(name, state);
      const row = reportRows.get(name);
      const badge = row && row.querySelector(".state");
      if (badge && badge.textContent !== state) badge.replaceWith(stateBadge(state));
    }
  }

  // A long table is drawn in steps: the rows of a flow of 10,000 atoms (and its 20,000
  // events) all drawn on opening took 13 s here, most of it the browser laying the tables
  // out again each time the graph asked where its box was. A table of up to ROWS_WHOLE
  // rows is drawn whole, as before; a longer one its first ROWS_STEP rows (more than a
  // screen), then ROWS_STEP more each time its end comes within a screen of the view,
  // or all of them at once when asked ("show all", for the browser's find).
  const ROWS_WHOLE = 2000, ROWS_STEP = 200;
  const stepped = new Map();  // the table's id -> {observer, drawn}: what showReport draws again
  // Draw rows 0..count-1 of the table `id` names ("report", "events"; makeRow(i) appends row
  // i to it), with the note `more` after it saying how many are drawn; `noun` names the rows.
  function drawInSteps(id, count, makeRow, more, noun) {
    const before = stepped.get(id);
    if (before) before.observer.disconnect();
    // Drawn again (the report read again while the flow runs): as far as it was drawn before.
    let drawn = 0;
    const first = count <= ROWS_WHOLE ? count : Math.max(ROWS_STEP, before ? before.drawn : 0);
    const state = {observer: new IntersectionObserver(entries => {
      if (entries.some(e => e.isIntersecting)) drawUpTo(drawn + ROWS_STEP);
    }, {rootMargin: "100% 0px"}), drawn: 0};
    stepped.set(id, state);
    const all = el("button", {"type": "button"}, "show all");
    all.addEventListener("click", () => drawUpTo(count));
    function drawUpTo(end) {
      end = Math.min(count, end);
      for (; drawn < end; drawn++) makeRow(drawn);
      state.drawn = drawn;
      if (drawn < count) {
        more.replaceChildren("Showing " + drawn.toLocaleString("en") + " of " + count.toLocaleString("en") +
          " " + noun + "; more as you scroll, or ", all, ".");
        more.hidden = false;
        // Observed again so a note still in view after a step asks for the next one.
        state.observer.disconnect();
        state.observer.observe(more);
      } else {
        state.observer.disconnect();
        more.replaceChildren();
        more.hidden = true;
      }
    }
    drawUpTo(first);
  }

  function showReport(report) {
    document.getElementById("flow-title").replaceChildren(bdi(report.name), " (" + report.uuid + ")");
    // The tab says which flow and how it stands: an operator keeps several open.
    setTitle(isolated(report.name) + " " + report.state);
    const badge = document.getElementById("flow-state");
    badge.textContent = report.state;
    badge.className = "state s-" + report.state;
    const table = el("table");
    table.append(el("tr"));
    for (const head of ["atom", "state", "attempts", "duration", "result / failure"]) table.firstChild.append(el("th", {}, head));
    reportRows = new Map();
    // Said by the server as the text report says it: a resumed flow's time is over all its runs.
    const total = report.took ?? "";
    const summary = el("p", {}, Object.entries(report.totals).map(([s, n]) => n + " " + s).join(", ") + total);
    const more = el("p", {"class": "more", "id": "report-more"});
    document.getElementById("report").replaceChildren(summary, table, more);
    drawInSteps("report", report.atoms.length, (i) => {
      const atom = report.atoms[i];
      const row = el("tr", {"data-atom": atom.name});
      reportRows.set(atom.name, row);
      const failure = atom.failure ? atom.failure.type + ": " + atom.failure.message : (atom.result || "");
      row.append(el("td", {}, atom.name));
      const cell = el("td");
      cell.append(stateBadge(liveStates.get(atom.name) ?? atom.state));
      // Running (or reverting) since when: a run whose process died looks like one under way.
      // In the text report's words: a PENDING atom's time is its earlier attempts'.
      let took = atom.took ?? "";
      if (atom.state === "RUNNING" || atom.state === "REVERTING") {
        // The atom's own events: its flow may have its name, and a resumed flow's RUNNING came
        // after the start of an atom run again in doubt (which records no RUNNING of its own).
        const began = (report.events || [])
          .filter(e => e.kind !== "flow" && e.name === atom.name && e.state === atom.state).pop();
        if (began) took = "since " + when(began.at);
      }
      const outcome = el("td");
      outcome.append(bdi(failure), (atom.cached ? " (from the cache)" : "") + revertNote(atom));
      row.append(cell, el("td", {"class": "num"}, atom.attempts ?? ""), el("td", {"class": "took num"}, took), outcome);
      table.append(row);
    }, more, "atoms");

    const failures = document.getElementById("failures");
    failures.replaceChildren();
    for (const atom of report.atoms) {
      for (const [what, failure] of [["execute", atom.failure], ["revert", atom.revert_failure]]) {
        if (!failure) continue;
        const heading = el("h3");
        heading.append(bdi(atom.name), " " + what + ": " + failure.type + ": ", bdi(failure.message));
        failures.append(heading);
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
    const tree = (report.event_tree || (report.events || []).map(e => ({seq: e.seq, depth: 0})))
      .filter(({seq}) => bySeq.has(seq));
    drawInSteps("events", tree.length, (i) => {
      const {seq, depth} = tree[i];
      const event = bySeq.get(seq);
      const row = el("tr", {"data-seq": seq, "data-depth": depth});
      const what = el("td", {"class": "tree", "style": "padding-left: " + (10 + 16 * Math.min(depth, 12)) + "px"});
      what.append(depth ? "\u21b3 " : "", bdi(event.name), event.kind === "flow" ? " (flow)" : " #" + event.attempt);
      const cell = el("td");
      cell.append(stateBadge(event.state));
      const cause = el("td");
      cause.append(bdi(prose(event.cause.text)), event.cause.event ? " (#" + event.cause.event + ")" : "");
      row.append(el("td", {"class": "num"}, event.seq), el("td", {"class": "num"}, event.run), what, cell, cause);
      events.append(row);
    }, document.getElementById("events-more"), "events");
  }

  async function flowPage() {
    const uuid = decodeURIComponent(location.pathname.split("/").pop());
    const api = "/api/flows/" + encodeURIComponent(uuid);
    const legend = document.getElementById("legend");
    for (const state of STATES) legend.append(stateBadge(state));
    let graph = null;
    let report = null;
    let cy = null;
    let tries = 0;
    while (report === null) {  // the monitor or its database may be away when the page opens
      try {
        // The report (megabytes for a big flow) is read while the graph is drawn: the graph
        // waited for it, seconds for a flow of 10,000 atoms. It is asked for once the graph's
        // answer came: asked for together, the server made both at once, and the graph's
        // answer (0.1 s for a summary of 10,000 atoms) came after 2 s.
        graph = graph || await getJSON(api + "/graph?summary=1");
        const reading = getJSON(api);
        reading.catch(() => {});  // awaited below; a failure is handled there
        if (cy === null) {
          cy = drawGraph(document.getElementById("graph"), graph, api);
          current.cy = cy;
        }
        report = await reading;
      } catch (err) {
        setLive("no");
        if (err.status === 404) {  // no such flow: asking again will not make one
          showStatus("cannot read the flow: " + err.message);
          return;
        }
        const delay = backoff(tries++);
        showStatus("cannot read the flow: " + err.message + "; trying again in " + inSeconds(delay));
        await pause(delay);
      }
    }
    showStatus("");
    setLive("yes");
    showReport(report);
    colour(cy, Object.fromEntries(report.atoms.map(a => [a.name, a.state])));
    let follow = true;
    cy.on("dragpan scrollzoom pinchzoom flowkit-opened", () => { follow = false; });
    followRun(cy);
    // The graph is asked for again when a snapshot's version says it changed: one
    // request at a time, and once more after it if the version moved meanwhile.
    let atoms = Object.fromEntries(report.atoms.map(a => [a.name, a.state]));
    let wanted = graph.version;
    let regraphing = false;
    async function regraph() {
      if (regraphing) return;
      regraphing = true;
      try {
        while (wanted !== cy.scratch("flowkit").version) {
          const asked = wanted;
          const grown = await getJSON(api + "/graph?summary=1&drawing=" +
                                      encodeURIComponent(cy.scratch("flowkit").drawing || ""));
          if (grown.version === cy.scratch("flowkit").version) break;  // nothing new after all
          if (redrawGraph(cy, grown, atoms, follow) && follow) followRun(cy);
          if (wanted === asked) break;
        }
      } catch (err) {
        console.warn("graph refresh failed:", err);  // the next change tries again
      } finally {
        regraphing = false;
      }
    }
    // The report (each atom's result, failure and events: megabytes for a big flow) is read
    // again after a change, but at most once per reportEvery(): read after every snapshot,
    // a 10,000-atom flow's page fetched 7 MB per change. The states in its table follow each
    // snapshot meanwhile (markStates), so only results, durations and events wait.
    let refreshing = false;
    let reportDue = null;  // the timer of the next read, while one is waited for
    let lastReport = 0;    // Date.now() when the last read was asked for
    function refreshReport() {
      if (reportDue !== null) return;
      const wait = Math.max(0, lastReport + reportEvery(report) - Date.now());
      reportDue = setTimeout(readReport, wait);
    }
    async function readReport() {
      reportDue = null;
      if (refreshing) { refreshReport(); return; }
      refreshing = true;
      lastReport = Date.now();
      try {
        report = await getJSON(api);
        showReport(report);
        markStates(atoms);
      } catch (err) {
        console.warn("report refresh failed:", err);  // the next change tries again
      } finally {
        refreshing = false;
      }
    }

    // The live stream. When it is lost (the monitor stops: "closing"; the connection
    // drops; the monitor refuses it) the page says so, marks what it shows as not live,
    // and connects again after a bounded backoff, reading the flow's report first: the
    // flow went on meanwhile, and an answer says the monitor is back.
    let stream = null;
    let lostFor = "";    // why the stream was lost, said until the page is live again
    let retries = 0;     // tries to connect again since the stream last said something
    function reconnectLater(why) {
      if (stream !== null) stream.close();
      stream = null;
      lostFor = lostFor || why;
      setLive("no");
      const delay = backoff(retries++);
      showStatus(lostFor + " (showing the last state read); reconnecting in " + inSeconds(delay));
      setTimeout(reconnect, delay);
    }
    async function reconnect() {
      try {
        report = await getJSON(api);
      } catch (err) {
        if (err.status === 404) {  // the monitor is back, without this flow (another database?)
          showStatus("cannot read the flow: " + err.message + " (showing the last state read)");
          return;
        }
        if (err.status !== undefined) lostFor = err.message;  // it answers, but refuses: say why
        reconnectLater(lostFor);
        return;
      }
      showReport(report);
      colour(cy, Object.fromEntries(report.atoms.map(a => [a.name, a.state])));
      connect();
    }
    function connect() {
      const mine = new EventSource(api + "/stream?changes=1");
      stream = mine;
      mine.addEventListener("unavailable", (message) => {
        retries = 0;  // the monitor answers; its database does not
        setLive("no");
        showStatus("the database does not answer (showing the last state read): " + JSON.parse(message.data).error);
      });
      // The server stops: it ends every stream with this. Without a word the page went on
      // showing its last snapshot as if it were live.
      mine.addEventListener("closing", () => reconnectLater("the monitor stopped"));
      // A finished flow's stream ends with "end": close it, or the browser would reconnect
      // to be told the same again; a last read of the report has the final details.
      mine.addEventListener("end", () => {
        mine.close();
        lostFor = "";
        showStatus("");
        setLive("ended");
        clearTimeout(reportDue);  // the final details, now rather than when a throttled read is due
        reportDue = null;
        readReport();
      });
      mine.addEventListener("gone", (message) => {
        mine.close();
        setLive("no");
        showStatus(JSON.parse(message.data).error + " (showing the last state read)");
      });
      // The connection dropped or was refused: the browser's own retry is at a fixed
      // pace, forever (or never, once refused); this one backs off, and says why.
      mine.onerror = () => {
        if (mine === stream) reconnectLater("lost the monitor's live stream");
      };
      mine.onmessage = (message) => {
        const snapshot = JSON.parse(message.data);
        if (!snapshot) return;
        retries = 0;
        lostFor = "";
        showStatus("");
        setLive("yes");
        // With ?changes=1 every snapshot after the first holds only the atoms that changed.
        atoms = snapshot.changes ? Object.assign(atoms, snapshot.atoms) : snapshot.atoms;
        colour(cy, snapshot.atoms);
        markStates(snapshot.atoms);
        if (snapshot.graph !== undefined && snapshot.graph !== cy.scratch("flowkit").version) {
          wanted = snapshot.graph;
          regraph();
        }
        if (follow) followRun(cy);
        document.body.setAttribute("data-flow-state", snapshot.state);
        refreshReport();
      };
    }
    connect();
  }

  // current.cy: the flow page's Cytoscape instance, for tests and the console.
  const current = {cy: null};
  return {listPage, flowPage, drawGraph, colour, current};
})();
