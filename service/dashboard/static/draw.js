// Architecture drawings from a trial's `drawing` (GET /v1/jobs/{id}/trials/{number}), as SVG.
const SVG = "http://www.w3.org/2000/svg";
const OP_COLOURS = { none: "#b8bec9", skip_connect: "#6b7280", nor_conv_1x1: "#2f6fdf", nor_conv_3x3: "#7c3aed",
  avg_pool_3x3: "#16a34a" };

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

/** A cell: nodes on a line, every edge an arc above (or below) carrying its op's name. */
function cell(drawing) {
  const gap = 130, x0 = 50, y = 150, r = 18, width = x0 * 2 + gap * (drawing.nodes - 1);
  const root = svg("svg", { viewBox: `0 0 ${width} 300`, class: "cell", role: "img" });
  root.append(svg("title", {}, "the cell: a DAG with an op on every edge"));
  const defs = svg("defs");
  const marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 6, markerHeight: 6, orient: "auto-start-reverse" });
  marker.append(svg("path", { d: "M0,0 L10,5 L0,10 z", fill: "#4b5563" }));
  defs.append(marker); root.append(defs);
  // adjacent nodes: a straight edge; longer edges arc, alternating above and below by their start
  // (0->2 above, 1->3 below, 0->3 above and higher), so that no two arcs share a path
  drawing.edges.forEach((edge) => {
    const xa = x0 + edge.from * gap + r, xb = x0 + edge.to * gap - r;
    const span = edge.to - edge.from, up = edge.from % 2 === 0 ? -1 : 1;
    const lift = span === 1 ? 0 : up * (20 + 45 * (span - 1));
    const mx = (xa + xb) / 2, my = y + lift;
    const colour = OP_COLOURS[edge.op] ?? "#374151";
    const path = span === 1 ? `M${xa},${y} L${xb},${y}` : `M${xa},${y} Q${mx},${y + 2 * lift} ${xb},${y}`;
    const g = svg("g", { class: "edge", "data-op": edge.op, "data-from": edge.from, "data-to": edge.to });
    g.append(svg("path", { d: path, fill: "none", stroke: colour, "stroke-width": 2.2,
      "stroke-dasharray": edge.op === "none" ? "5,4" : "none", "marker-end": "url(#arrow)" }));
    g.append(svg("text", { x: mx, y: span === 1 ? y - 8 : my + (up < 0 ? -5 : 14), "text-anchor": "middle",
      "font-size": 11, fill: colour, "paint-order": "stroke", stroke: "#fcfcfd", "stroke-width": 3 }, edge.op));
    root.append(g);
  });
  for (let n = 0; n < drawing.nodes; n++) {
    const g = svg("g", { class: "node" });
    g.append(svg("circle", { cx: x0 + n * gap, cy: y, r, fill: "#fff", stroke: "#1d2330", "stroke-width": 2 }));
    g.append(svg("text", { x: x0 + n * gap, y: y + 4, "text-anchor": "middle", "font-size": 13, "font-weight": 600 }, n));
    root.append(g);
  }
  root.append(svg("text", { x: x0 - r, y: 290, "font-size": 11, fill: "#6b7280" },
    `node 0 is the cell's input, node ${drawing.nodes - 1} its output · ${(drawing.notes ?? []).join(" · ")}`));
  return root;
}

/** A stack: one box per layer, input at the top, with its width. */
function stack(drawing) {
  const boxW = 300, boxH = 44, step = 66, x = 40;
  const height = 40 + step * (drawing.layers.length + 1) + 30;
  const root = svg("svg", { viewBox: `0 0 ${boxW + 2 * x} ${height}`, class: "stack", role: "img" });
  root.append(svg("title", {}, "the network's layers, input first"));
  let y = 20;
  const io = (text) => { root.append(svg("text", { x: x + boxW / 2, y: y + 14, "text-anchor": "middle", "font-size": 12, fill: "#6b7280" }, text)); y += 30; };
  io("input");
  drawing.layers.forEach((layer, i) => {
    const g = svg("g", { class: "layer", "data-label": layer.label });
    g.append(svg("line", { x1: x + boxW / 2, y1: y - 12, x2: x + boxW / 2, y2: y, stroke: "#9ca3af", "stroke-width": 2 }));
    g.append(svg("rect", { x, y, width: boxW, height: boxH, rx: 6, fill: "#eef3ff", stroke: "#2f6fdf" }));
    g.append(svg("text", { x: x + 12, y: y + 18, "font-size": 13, "font-weight": 600 }, `${i + 1}. ${layer.label}`));
    g.append(svg("text", { x: x + 12, y: y + 35, "font-size": 11, fill: "#4b5563" }, layer.detail));
    g.append(svg("text", { x: x + boxW - 10, y: y + 18, "text-anchor": "end", "font-size": 12 },
      layer.width === null ? "→ output" : `width ${layer.width}`));
    root.append(g);
    y += step;
  });
  root.append(svg("text", { x, y: y + 6, "font-size": 11, fill: "#6b7280" }, (drawing.notes ?? []).join(" · ")));
  return root;
}

export function drawArchitecture(container, drawing) {
  if (!drawing) {
    container.textContent = "No drawing for this search space.";
    return;
  }
  container.replaceChildren(drawing.kind === "cell" ? cell(drawing) : stack(drawing));
}
