// flowkit monitor: a big graph's summary (doc/monitor.rst, "Big graphs"). The flow page loads it
// before monitor.js, whose drawGraph hands it the Cytoscape instance and the helpers it needs.
"use strict";
const flowkitSummary = (() => {
  // Past the server's threshold, "?summary=1" answers {"summary": true, "groups", "edges"}
  // instead of every node: each group (a sub-flow, or a piece of a long one) is drawn as one
  // node, labelled with its atoms' counts by state and coloured by the worst of them; the
  // atoms that failed or are under way stay drawn, inside it; a group clicked is fetched
  // alone ("?group=ID") and drawn in its place, in a box of its own, the groups after it moved
  // aside; a click on that box (not on an atom in it) closes the group again.
  const WORST = ["REVERT_FAILURE", "FAILURE", "REVERTING", "RETRYING", "RUNNING", "REVERTED",
                 "SUSPENDED", "PENDING", "SUCCESS", "IGNORE"];
  const KEPT = new Set(["REVERT_FAILURE", "FAILURE", "REVERTING", "RETRYING", "RUNNING"]);
  // The most atoms kept drawn in one closed group (its label counts them all), and per row.
  const KEPT_MAX = 12, KEPT_ROW = 4, KEPT_STEP = 130;
  const ROW = 70, COLUMN = 150;  // the server's layout's spacing (_layout.py)
  const GROUP_WIDTH = 190;  // wide enough for a few counts a line
  const OPENED_ZOOM = 0.8;  // the least zoom a group just opened is shown at (its names readable)
  // An open group's box: its padding, and the room above its atoms for its label (two lines).
  const OPEN_PAD = 14, OPEN_TOP = 40;

  // The groups' look, added after monitor.js's rules for states: a group shows its name and its
  // atoms' counts by state on two lines or more; with atoms kept drawn inside it, it is a box
  // around them with the label on top, on the page's background (dark whatever its state). An
  // open group is such a box around all its atoms, paler, its label clickable as its box is.
  function style() {
    return [
      {selector: 'node[kind = "group"]', style: {
        "width": GROUP_WIDTH, "height": 50, "font-size": 10, "text-wrap": "wrap",
        "text-max-width": GROUP_WIDTH - 6, "border-width": 2}},
      {selector: 'node[kind = "group"]:parent', style: {
        "text-valign": "top", "text-margin-y": -4, "text-max-width": 2 * GROUP_WIDTH, "padding": 10,
        "background-opacity": 0.45, "color": "#1d2330"}},
      {selector: 'node[kind = "group"][?opened]', style: {
        "padding": OPEN_PAD, "background-opacity": 0.2, "border-style": "dashed", "text-events": "yes"}},
    ];
  }

  // Keyboard and screen reader access. Cytoscape draws on a canvas, which neither reaches: each
  // group gets a <button> in a layer over the graph, placed over its node. Tab reaches it, Enter
  // or Space (a button's own keys) opens or closes it, its focus ring (monitor.css) shows which
  // group it is, and its aria-label names the group and counts its atoms by state, aria-expanded
  // saying whether it is open. The layer lets the mouse through to the canvas: a click is still
  // Cytoscape's. `container` is the graph's; the layer is made once and kept across views.
  function keysLayer(container) {
    let layer = container.querySelector(":scope > .graph-keys");
    if (layer === null) {
      layer = document.createElement("div");
      layer.className = "graph-keys";
      container.append(layer);
      // A role="img" hides what is inside it from screen readers: the summary is a group of them.
      container.dataset.imageLabel = container.getAttribute("aria-label") || "";
      container.setAttribute("role", "group");
    }
    return layer;
  }
  // The graph is drawn whole again (no groups): the layer goes, and the graph is an image again.
  function leave(container) {
    const layer = container.querySelector(":scope > .graph-keys");
    if (layer === null) return;
    layer.remove();
    container.setAttribute("role", "img");
    container.setAttribute("aria-label", container.dataset.imageLabel);
  }

  // A summary's view in `cy`: `before` is the view it replaces (its open groups are opened again,
  // the states it knew kept); `getJSON` and `nodeLabel` are monitor.js's.
  function view(cy, summary, before, {getJSON, nodeLabel}) {
    const groups = summary.groups;
    const byId = new Map(groups.map(g => [g.id, g]));
    const groupOf = new Map();  // node id -> its group's id
    for (const g of groups) for (const n of g.atoms.concat(g.barriers)) groupOf.set(n, g.id);
    // Groups' element ids must not be a node's: a prefix no node id starts with.
    let prefix = "group:";
    while ([...groupOf.keys()].some(n => n.startsWith(prefix))) prefix += ":";
    const cyId = (id) => prefix + id;
    const states = before ? before.states : new Map();  // atom name -> state, as last told
    const opened = new Map();  // group id -> its part, as the server placed it
    const opening = new Set();
    let keptKey = null;  // which atoms render() kept drawn in closed groups

    const container = cy.container();
    const layer = keysLayer(container);
    container.setAttribute("aria-label", "the flow's graph in " + groups.length + " groups of its " +
      summary.nodes + " nodes, coloured by state; Tab to a group, Enter or Space opens or closes it");
    // The group whose button had the focus keeps it when the summary is drawn again (it grew).
    const focused = layer.contains(document.activeElement) ? document.activeElement.dataset.group : null;
    const buttons = new Map();  // group id -> its button
    layer.replaceChildren(...groups.map(g => {
      const button = document.createElement("button");
      button.type = "button";
      button.dataset.group = g.id;
      button.addEventListener("click", () => (opened.has(g.id) ? close(g.id) : open(g.id)));
      button.addEventListener("focus", () => reveal(g.id));
      buttons.set(g.id, button);
      return button;
    }));

    function counts(g) {
      const found = {};
      for (const name of g.atoms) {
        const state = states.get(name) || "PENDING";
        found[state] = (found[state] || 0) + 1;
      }
      return found;
    }
    // A group node's data, and its button's words (what a screen reader says of it).
    function groupData(g) {
      const found = counts(g);
      const order = Object.keys(found).sort((a, b) => WORST.indexOf(a) - WORST.indexOf(b));
      const tally = order.map(s => found[s] + " " + s).join(", ");
      const label = g.label + "\n" + tally;
      const title = g.label + ": " + g.atoms.length + " atoms (" + tally + "); " +
        (opened.has(g.id) ? "click its box to hide them" : "click to show them");
      const button = buttons.get(g.id);
      button.setAttribute("aria-label", g.label + ": " + g.atoms.length + " atoms, " + tally);
      button.setAttribute("aria-expanded", String(opened.has(g.id)));
      return {label, title, state: order[0] || "PENDING"};
    }
    function kept() {
      const found = new Map();
      for (const g of groups) {
        if (opened.has(g.id)) continue;
        const names = g.atoms.filter(n => KEPT.has(states.get(n))).slice(0, KEPT_MAX);
        if (names.length) found.set(g.id, names);
      }
      return found;
    }

    // Every element again: the groups in the rows the server placed them in, each row as tall
    // as the tallest thing drawn in it (an open group's part, a closed one's kept atoms), each
    // group as wide as what it draws.
    function render() {
      const keep = kept();
      keptKey = JSON.stringify([...keep]);
      const elements = [];
      const rows = new Map();
      for (const g of groups) {
        if (!rows.has(g.y)) rows.set(g.y, []);
        rows.get(g.y).push(g);
      }
      let top = 0;
      for (const y of [...rows.keys()].sort((a, b) => a - b)) {
        const row = rows.get(y).sort((a, b) => a.x - b.x);
        let left = Math.min(...row.map(g => g.x)) - COLUMN / 2;
        let tallest = ROW;
        for (const g of row) {
          const part = opened.get(g.id);
          let width = COLUMN, height = ROW;
          if (part) {
            // In a box of its own (the group's node, a parent now): a click on it closes the group.
            elements.push({group: "nodes", data: {id: cyId(g.id), kind: "group", group: g.id, opened: true,
                                                  ...groupData(g)}});
            for (const n of part.nodes) {
              elements.push({group: "nodes", position: {x: left + OPEN_PAD + n.x, y: top + OPEN_TOP + n.y},
                             data: {id: n.id, kind: n.kind, label: nodeLabel(n), group: g.id, parent: cyId(g.id),
                                    state: states.get(n.id) || "PENDING"}});
            }
            width = Math.max(COLUMN, part.width) + 2 * OPEN_PAD;
            height = OPEN_TOP + part.height + 2 * OPEN_PAD;
          } else {
            const names = keep.get(g.id) || [];
            const columns = Math.min(names.length, KEPT_ROW);
            width = Math.max(GROUP_WIDTH + 20, columns * KEPT_STEP + 30);
            const middle = left + width / 2;
            elements.push({group: "nodes", position: {x: middle, y: top + ROW / 2},
                           data: {id: cyId(g.id), kind: "group", group: g.id, ...groupData(g)}});
            names.forEach((name, i) => {
              const x = middle + (i % KEPT_ROW - (columns - 1) / 2) * KEPT_STEP;
              const y = top + 44 + Math.floor(i / KEPT_ROW) * 36;  // under the group's label
              elements.push({group: "nodes", position: {x, y},
                             data: {id: name, kind: "task", label: nodeLabel({id: name}), parent: cyId(g.id),
                                    group: g.id, state: states.get(name)}});
            });
            height = names.length ? 50 + Math.ceil(names.length / KEPT_ROW) * 36 : ROW;
          }
          left += width;
          tallest = Math.max(tallest, height);
        }
        top += tallest;
      }
      // Edges: between closed groups as the summary links them; an open group's by node, each
      // end drawn as its node where its group is open, else as its group.
      const drawnAs = (n) => {
        const g = groupOf.get(n);
        return g === undefined ? null : (opened.has(g) ? n : cyId(g));
      };
      const seen = new Set();
      function edge(source, target, decider) {
        if (source === null || target === null || source === target) return;
        const key = JSON.stringify([source, target]);
        if (seen.has(key)) return;
        seen.add(key);
        const data = {id: "edge-" + seen.size, source, target};
        if (decider) data.decider = decider;
        elements.push({group: "edges", data});
      }
      for (const [u, v] of summary.edges) {
        if (!opened.has(u) && !opened.has(v)) edge(cyId(u), cyId(v), null);
      }
      for (const part of opened.values()) {
        for (const [u, v, decider] of part.edges) edge(drawnAs(u), drawnAs(v), decider);
      }
      cy.batch(() => {
        cy.elements().remove();
        cy.add(elements);
      });
      place();
    }

    // Each group's button over its node (or its box), as the graph is panned, zoomed or drawn again,
    // cut to the graph's view: a button outside it, focused, made the browser scroll the page to
    // reach it (the layer clips, it does not scroll; an open group's box is thousands of pixels
    // tall), before reveal() brought the group into the view.
    function place() {
      const cut = (low, high, size) => {
        const start = Math.min(size - 1, Math.max(0, low));
        return [start, Math.min(size, Math.max(start + 1, high)) - start];
      };
      for (const [id, button] of buttons) {
        const node = cy.getElementById(cyId(id));
        button.hidden = node.empty();
        if (button.hidden) continue;
        const box = node.renderedBoundingBox({includeLabels: false});
        const [left, width] = cut(box.x1, box.x2, cy.width());
        const [top, height] = cut(box.y1, box.y2, cy.height());
        Object.assign(button.style, {left: left + "px", top: top + "px", width: width + "px", height: height + "px"});
      }
    }
    // A group reached by the keyboard is brought into view if it is out of it.
    function reveal(id) {
      const node = cy.getElementById(cyId(id));
      if (node.empty()) return;
      const box = node.renderedBoundingBox({includeLabels: false});
      if (box.x1 >= 0 && box.y1 >= 0 && box.x2 <= cy.width() && box.y2 <= cy.height()) return;
      cy.center(node);
      cy.emit("flowkit-opened");  // the view is the user's now: the page stops following the run
    }

    // New states (a snapshot's changes, or every atom's): the groups' counts and colours follow;
    // an atom that starts to run, or fails, in a closed group is drawn in it (and one done, no more).
    function update(atoms) {
      for (const [name, state] of Object.entries(atoms)) states.set(name, state);
      if (JSON.stringify([...kept()]) !== keptKey) {
        render();
        return;
      }
      cy.batch(() => {
        for (const [name, state] of Object.entries(atoms)) {
          const node = cy.getElementById(name);
          if (node.nonempty()) node.data("state", state);
        }
        for (const g of groups) {
          const data = groupData(g);  // its button's words too
          const node = cy.getElementById(cyId(g.id));
          if (node.nonempty()) node.data(data);
        }
      });
    }

    // A closed group clicked (or an atom kept drawn in it): fetch its part and draw it in place,
    // then show it, its atoms that failed or run first.
    async function open(id) {
      if (opened.has(id) || opening.has(id) || !byId.has(id)) return;
      opening.add(id);
      try {
        const part = await getJSON(cy.scratch("flowkit").api + "/graph?group=" + encodeURIComponent(id));
        if (cy.scratch("flowkit").view !== made) return;  // the graph was drawn again meanwhile
        opened.set(id, part);
        render();
        // Fitted if it can be read so; a long part is shown from its top, or where it failed or runs.
        const shown = cy.nodes().filter(n => n.data("group") === id && n.data("kind") !== "group");
        cy.fit(shown, 20);
        const notable = shown.filter(n => KEPT.has(n.data("state")));
        if (cy.zoom() < OPENED_ZOOM) {
          cy.zoom(OPENED_ZOOM);
          cy.center(notable.nonempty() ? notable : shown.first());
        }
        cy.emit("flowkit-opened");  // the view is the user's now: the page stops following the run
      } catch (err) {
        console.warn("cannot open group " + id + ":", err);
      } finally {
        opening.delete(id);
      }
    }
    // The graph's version moved but not its summary (a link learned inside a group): each open
    // group's part is asked for again, saying the drawing it has, and drawn again if it changed.
    // Without this an open group of a graph learned from the event log never showed the links
    // its run went on to learn, while the summary around it stayed the same.
    async function refresh() {
      const changed = [];
      for (const [id, part] of [...opened]) {
        try {
          const again = await getJSON(cy.scratch("flowkit").api + "/graph?group=" + encodeURIComponent(id) +
                                      "&drawing=" + encodeURIComponent(part.drawing || ""));
          if (cy.scratch("flowkit").view !== made) return;  // the graph was drawn again meanwhile
          if (!again.unchanged && opened.get(id) === part) {
            opened.set(id, again);
            changed.push(id);
          }
        } catch (err) {
          console.warn("cannot refresh group " + id + ":", err);  // the next change tries again
        }
      }
      if (!changed.length) return;
      render();
      // A part learned from the event log is placed anew as it learns links (atoms not reached yet
      // wait in its first row): where the view showed nothing of it any more, its atoms that run
      // or failed (or its first) are brought back into the view, at the zoom the user chose.
      const extent = cy.extent();
      for (const id of changed) {
        const shown = cy.nodes().filter(n => n.data("group") === id && n.data("kind") !== "group");
        const seen = shown.some(n => {
          const {x, y} = n.position();
          return x >= extent.x1 && x <= extent.x2 && y >= extent.y1 && y <= extent.y2;
        });
        const notable = shown.filter(n => KEPT.has(n.data("state")));
        if (!seen && shown.nonempty()) cy.center(notable.nonempty() ? notable : shown.first());
      }
    }
    // An open group closed: drawn as one node again (its part is asked for again if reopened: the
    // flow may have moved on). The view stays where it is.
    function close(id) {
      if (!opened.delete(id)) return;
      render();
      cy.emit("flowkit-opened");  // the view is the user's now: the page stops following the run
    }
    // A click: on a closed group (or an atom kept drawn in it) opens it; on an open group's box
    // (not on an atom in it), closes it.
    function tapped(node) {
      const id = node.data("group");
      if (id === undefined) return;
      if (!opened.has(id)) open(id);
      else if (node.data("kind") === "group") close(id);
    }

    const made = {states, opened, render, update, open, close, tapped, place, refresh};
    if (focused !== null && buttons.has(focused)) buttons.get(focused).focus({preventScroll: true});
    // Drawn again (the flow grew): the groups that were open and are still groups open again.
    if (before) for (const id of before.opened.keys()) if (byId.has(id)) open(id);
    return made;
  }


  return {style, view, leave};
})();
