// The graph page: fetch /ui/api/graph/<id> (same cookie auth) and draw it with the vendored cytoscape.js.
(function () {
  "use strict";
  const EDGE_COLOURS = { PARENT: "#868e96", NEXT: "#1c7ed6", SUPERSEDES: "#e8590c", MERGED_INTO: "#ae3ec9", RELATE_TO: "#2f9e44", MENTIONS: "#c2255c" };
  const NODE_COLOURS = { TopicMemory: "#fab005", WorkingMemory: "#74c0fc", UserMemory: "#63e6be", LongTermMemory: "#748ffc", Entity: "#f783ac" };

  function text(tag, value) { const el = document.createElement(tag); el.textContent = value; return el; }

  function showDetails(node) {
    const box = document.getElementById("details");
    box.replaceChildren();
    const d = node.data();
    const title = document.createElement("h3");
    if (d.type === "Entity") {
      title.textContent = d.label;
    } else {
      const link = document.createElement("a");
      link.href = "/ui/memories/" + encodeURIComponent(d.id);
      link.textContent = d.key || d.id;
      title.appendChild(link);
    }
    box.append(title, text("p", d.text),
      text("p", d.type + " · " + d.status + " · " + d.cube + " · " + d.source),
      text("p", d.created));
  }

  function draw(container, data) {
    const elements = data.nodes.map((n) => ({ data: n, classes: (n.id === data.center ? "center " : "") + n.status }))
      .concat(data.edges.map((e, i) => ({ data: { id: "e" + i, source: e.source, target: e.target, rel: e.rel } })));
    const cy = cytoscape({
      container: container,
      elements: elements,
      wheelSensitivity: 0.3,
      minZoom: 0.1,
      maxZoom: 1.5,  // a graph of two or three memories is not blown up to fill the box
      style: [
        { selector: "node", style: { "label": "data(label)", "font-size": 12, "text-wrap": "ellipsis", "text-max-width": 160, "text-valign": "bottom", "text-margin-y": 4,
            "background-color": (n) => NODE_COLOURS[n.data("type")] || "#adb5bd", "width": 22, "height": 22, "color": "#1d2330" } },
        { selector: "node[type = 'Entity']", style: { "shape": "round-rectangle", "width": 16, "height": 16 } },
        { selector: "node.center", style: { "border-width": 4, "border-color": "#1d2330", "width": 32, "height": 32 } },
        { selector: "node.superseded, node.deleted", style: { "opacity": 0.55, "border-style": "dashed", "border-width": 2, "border-color": "#868e96" } },
        { selector: "edge", style: { "width": 2, "curve-style": "bezier", "target-arrow-shape": "triangle", "font-size": 9,
            "line-color": (e) => EDGE_COLOURS[e.data("rel")] || "#adb5bd", "target-arrow-color": (e) => EDGE_COLOURS[e.data("rel")] || "#adb5bd",
            "text-rotation": "autorotate", "color": "#667085" } },
        { selector: "edge:selected, edge.hover", style: { "label": "data(rel)" } },  // the legend gives the colours
        { selector: ":selected", style: { "border-width": 3, "border-color": "#3b5bdb" } },
      ],
      layout: { name: "preset" },
    });
    // Rings by hops from the centre memory: one ring per edge distance, so "around a memory" reads at a glance.
    const root = cy.getElementById(data.center);
    const hops = root.nonempty() ? cy.elements().dijkstra({ root: root, directed: false }) : null;
    const depth = (n) => { const d = hops ? hops.distanceTo(n) : 0; return Number.isFinite(d) ? d : 9; };
    cy.layout({ name: "concentric", animate: false, padding: 40, minNodeSpacing: 90, startAngle: 3 / 2 * Math.PI,
                concentric: (n) => 10 - depth(n), levelWidth: () => 1 }).run();
    cy.on("tap", "node", (evt) => showDetails(evt.target));
    cy.on("mouseover", "edge", (evt) => evt.target.addClass("hover"));
    cy.on("mouseout", "edge", (evt) => evt.target.removeClass("hover"));
    cy.on("dbltap", "node[type != 'Entity']", (evt) => {
      window.location.href = "/ui/graph/" + encodeURIComponent(evt.target.id());
    });
    const center = cy.getElementById(data.center);
    if (center.nonempty()) { showDetails(center); }
    window.hippographGraph = cy;  // for tests and the console
    const entities = data.nodes.filter((n) => n.type === "Entity").length;
    document.getElementById("graph-count").textContent =
      (data.nodes.length - entities) + " memories, " + entities + " entities, " + data.edges.length + " edges";
  }

  document.addEventListener("DOMContentLoaded", function () {
    const container = document.getElementById("cy");
    if (!container) { return; }
    fetch(container.dataset.src, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then((r) => r.ok ? r.json() : r.json().then((body) => Promise.reject(new Error(body.reason || r.statusText))))
      .then((data) => draw(container, data))
      .catch((err) => { container.replaceChildren(text("p", "Could not load the graph: " + err.message)); });
  });
})();
