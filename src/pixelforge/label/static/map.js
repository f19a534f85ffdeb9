// pixelforge label: the map of a clustered dataset (map_x, map_y, cluster from `pixelforge cluster`).
// One canvas: points drawn once to an offscreen canvas, a grid of cells finds the point under the mouse,
// a drag draws a lasso whose points can be tagged or made the labelling queue. Uses app.js's globals.
"use strict";

const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
  "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2",
  "#dbdb8d", "#9edae5", "#393b79"];
const NOISE = "#bbbbbb";
const CELL = 12;          // css px per hit-test cell
const HIT = 8;            // a point within this many css px is under the mouse
const mapState = {
  data: null, px: null, py: null, grid: null, cols: 0, rows: 0,
  base: null, selected: new Set(), lasso: null, hover: -1, width: 0, height: 0,
};

function mapColour(c) {
  return c === null || c === undefined || c < 0 ? NOISE : PALETTE[c % PALETTE.length];
}

async function openMap() {
  $("stage").hidden = true;
  $("mapview").hidden = false;
  if (!mapState.data) {
    let data;
    try {
      data = await api("/api/map");
    } catch (err) {
      $("mapinfo").textContent = err.message;
      return;
    }
    if (mapState.data) return;  // a second open while this one loaded drew it already
    mapState.data = data;
    renderLegend();
  }
  if ($("mapview").hidden) return;  // closed while loading: laid out when next opened (the canvas has no size now)
  const canvas = $("map");
  if (!mapState.base || canvas.clientWidth !== mapState.width || canvas.clientHeight !== mapState.height) layoutMap();
  drawMap();
  document.body.dataset.map = "drawn";
  window.mapDrawnMs = performance.now();
}

async function closeMap(reshow = true) {
  $("mapview").hidden = true;
  $("stage").hidden = false;
  if (reshow === true && mapState.tagsChanged && state.item) {  // the shown sample's tags may have changed
    mapState.tagsChanged = false;
    await show(state.pos);
  }
}

// screen positions of every point, and the grid of cells that holds them
function layoutMap() {
  const d = mapState.data, canvas = $("map");
  const width = canvas.clientWidth, height = canvas.clientHeight, dpr = window.devicePixelRatio || 1;
  canvas.width = Math.round(width * dpr);
  canvas.height = Math.round(height * dpr);
  mapState.width = width;
  mapState.height = height;
  const n = d.keys.length, pad = 10;
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (let i = 0; i < n; i++) {
    x0 = Math.min(x0, d.x[i]); x1 = Math.max(x1, d.x[i]);
    y0 = Math.min(y0, d.y[i]); y1 = Math.max(y1, d.y[i]);
  }
  const sx = (width - 2 * pad) / ((x1 - x0) || 1), sy = (height - 2 * pad) / ((y1 - y0) || 1);
  mapState.px = new Float32Array(n);
  mapState.py = new Float32Array(n);
  mapState.cols = Math.ceil(width / CELL) + 1;
  mapState.rows = Math.ceil(height / CELL) + 1;
  mapState.grid = Array.from({ length: mapState.cols * mapState.rows }, () => []);
  for (let i = 0; i < n; i++) {
    const px = pad + (d.x[i] - x0) * sx, py = height - pad - (d.y[i] - y0) * sy;  // y grows upwards
    mapState.px[i] = px;
    mapState.py[i] = py;
    mapState.grid[Math.floor(py / CELL) * mapState.cols + Math.floor(px / CELL)].push(i);
  }
  const base = document.createElement("canvas");
  base.width = canvas.width;
  base.height = canvas.height;
  const ctx = base.getContext("2d");
  ctx.scale(dpr, dpr);
  const r = n > 3000 ? 1.5 : 2.5;
  for (let i = 0; i < n; i++) {
    ctx.fillStyle = mapColour(d.cluster[i]);
    ctx.fillRect(mapState.px[i] - r, mapState.py[i] - r, 2 * r, 2 * r);
  }
  mapState.base = base;
  $("mapinfo").textContent = `${n.toLocaleString()} samples · drag to select · click a point to open it`;
}

function drawMap() {
  const canvas = $("map"), ctx = canvas.getContext("2d"), dpr = window.devicePixelRatio || 1;
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.drawImage(mapState.base, 0, 0);
  ctx.scale(dpr, dpr);
  ctx.strokeStyle = "#000";
  ctx.lineWidth = 1;
  for (const i of mapState.selected) ctx.strokeRect(mapState.px[i] - 3, mapState.py[i] - 3, 6, 6);
  if (mapState.hover >= 0) {
    ctx.lineWidth = 2;
    ctx.strokeRect(mapState.px[mapState.hover] - 5, mapState.py[mapState.hover] - 5, 10, 10);
  }
  if (mapState.lasso && mapState.lasso.length > 1) {
    ctx.beginPath();
    ctx.moveTo(mapState.lasso[0][0], mapState.lasso[0][1]);
    for (const [x, y] of mapState.lasso) ctx.lineTo(x, y);
    ctx.closePath();
    ctx.fillStyle = "rgba(50, 100, 255, .12)";
    ctx.fill();
    ctx.strokeStyle = "#36f";
    ctx.lineWidth = 1;
    ctx.stroke();
  }
}

function renderLegend() {
  const d = mapState.data, counts = new Map();
  for (const c of d.cluster) counts.set(c, (counts.get(c) || 0) + 1);
  const legend = $("maplegend");
  legend.replaceChildren();
  for (const [c, n] of [...counts.entries()].sort((a, b) => b[1] - a[1])) {
    const row = document.createElement("div");
    const dot = document.createElement("span");
    dot.className = "dot";
    dot.style.background = mapColour(c);
    const name = c === null || c < 0 ? "no cluster" : `${c}: ${d.names[String(c)] || ""}`;
    row.append(dot, `${name} (${n})`);
    legend.append(row);
  }
}

function nearest(x, y) {
  const cx = Math.floor(x / CELL), cy = Math.floor(y / CELL);
  let best = -1, bestD = HIT * HIT;
  for (let gy = cy - 1; gy <= cy + 1; gy++) {
    for (let gx = cx - 1; gx <= cx + 1; gx++) {
      if (gx < 0 || gy < 0 || gx >= mapState.cols || gy >= mapState.rows) continue;
      for (const i of mapState.grid[gy * mapState.cols + gx]) {
        const dd = (mapState.px[i] - x) ** 2 + (mapState.py[i] - y) ** 2;
        if (dd <= bestD) { best = i; bestD = dd; }
      }
    }
  }
  return best;
}

function inside(poly, x, y) {  // even-odd rule
  let hit = false;
  for (let i = 0, j = poly.length - 1; i < poly.length; j = i++) {
    const [xi, yi] = poly[i], [xj, yj] = poly[j];
    if ((yi > y) !== (yj > y) && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) hit = !hit;
  }
  return hit;
}

function showTip(i, x, y) {
  const tip = $("maptip");
  if (i < 0) { tip.hidden = true; return; }
  const d = mapState.data, key = d.keys[i];
  const img = tip.querySelector("img");
  const src = `/api/image/${encodeURIComponent(key)}`;
  if (img.getAttribute("src") !== src) img.src = src;
  const label = d.label[i] === null ? "" : ` · ${d.label[i]}`;
  tip.querySelector("div").textContent = `${key}${label}${d.caption[i] ? ` · ${d.caption[i]}` : ""}`;
  tip.style.left = `${Math.min(x + 14, mapState.width - 180)}px`;
  tip.style.top = `${Math.min(y + 14, mapState.height - 200)}px`;
  tip.hidden = false;
}

function setSelection(indices) {
  mapState.selected = new Set(indices);
  const n = mapState.selected.size;
  $("mapsel").hidden = n === 0;
  $("mapcount").textContent = `${n.toLocaleString()} selected`;
  drawMap();
}

async function openSample(i) {
  const key = mapState.data.keys[i];
  let at = state.queue.indexOf(key);
  if (at < 0) {  // the sample is not in the current (tag) queue: back to the whole queue
    setQueueTag(null);
    await loadQueue();
    at = state.queue.indexOf(key);
  }
  mapState.tagsChanged = false;  // show() below brings the sample's tags
  closeMap(false);
  await show(at);
}

// requests of at most --max-body bytes (the server says how many), keys cut in order
function keyChunks(keys, tag) {
  const room = (state.session.max_body || 262144) - JSON.stringify({ keys: [], tag, annotator: annotator(), remove: false }).length - 64;
  const chunks = [];
  let chunk = [], size = 0;
  for (const k of keys) {
    const cost = JSON.stringify(k).length + 1;
    if (chunk.length && size + cost > room) { chunks.push(chunk); chunk = []; size = 0; }
    chunk.push(k);
    size += cost;
  }
  if (chunk.length) chunks.push(chunk);
  return chunks;
}

async function tagSelection(remove, name) {
  const tag = name || $("maptag").value.trim();
  if (!tag) { toast("give the selection a tag first"); return null; }
  const keys = [...mapState.selected].map((i) => mapState.data.keys[i]);
  let changed = 0;
  for (const chunk of keyChunks(keys, tag)) {
    const r = await api("/api/tag", { keys: chunk, tag, annotator: annotator(), remove });
    changed += r.changed;
  }
  mapState.tagsChanged = true;
  toast(`${remove ? "untagged" : "tagged"} ${changed} sample(s) ${remove ? "from" : "with"} "${tag}"`);
  if (tag === state.tag) await loadQueue();  // the queue is this tag's samples: it changed
  return tag;
}

// "label these": the selection under a tag of its own (the name typed, else a new selection-... one),
// and that tag's samples as the queue
async function labelSelection() {
  const typed = $("maptag").value.trim();
  const stamp = new Date().toISOString().slice(0, 19).replace(/[-:]/g, "").replace("T", "-");
  const tag = await tagSelection(false, typed || `selection-${stamp}`);
  if (!tag) return;
  setQueueTag(tag);
  await loadQueue();
  mapState.tagsChanged = false;
  closeMap(false);
  const firstTodo = state.done.indexOf(false);
  await show(firstTodo >= 0 ? firstTodo : 0);
}

function initMap() {
  const canvas = $("map");
  $("mapbutton").addEventListener("click", () => ($("mapview").hidden ? openMap() : closeMap()));
  $("mapclose").addEventListener("click", () => closeMap());
  $("mapclear").addEventListener("click", () => setSelection([]));
  $("maptagbutton").addEventListener("click", () => tagSelection(false).catch((e) => toast(e.message)));
  $("mapuntag").addEventListener("click", () => tagSelection(true).catch((e) => toast(e.message)));
  $("maplabel").addEventListener("click", () => labelSelection().catch((e) => toast(e.message)));
  const at = (e) => { const r = canvas.getBoundingClientRect(); return [e.clientX - r.left, e.clientY - r.top]; };
  let down = null;
  canvas.addEventListener("mousedown", (e) => {
    if (!mapState.data) return;
    e.preventDefault();
    down = at(e);
    mapState.lasso = [down];
  });
  canvas.addEventListener("mousemove", (e) => {
    if (!mapState.data) return;
    const [x, y] = at(e);
    if (down) {
      mapState.lasso.push([x, y]);
      showTip(-1);
    } else {
      mapState.hover = nearest(x, y);
      showTip(mapState.hover, x, y);
    }
    drawMap();
  });
  canvas.addEventListener("mouseleave", () => { mapState.hover = -1; showTip(-1); if (!down) drawMap(); });
  window.addEventListener("mouseup", (e) => {
    if (!down) return;
    const [x, y] = at(e), moved = Math.hypot(x - down[0], y - down[1]);
    const lasso = mapState.lasso;
    down = null;
    mapState.lasso = null;
    if (moved < 4 && lasso.length < 4) {  // a click
      const i = nearest(x, y);
      if (i >= 0) openSample(i).catch((err) => toast(err.message));
      else drawMap();
      return;
    }
    const picked = [];
    for (let i = 0; i < mapState.px.length; i++) if (inside(lasso, mapState.px[i], mapState.py[i])) picked.push(i);
    setSelection(e.shiftKey ? [...mapState.selected, ...picked] : picked);
  });
  window.addEventListener("resize", () => { if (mapState.data && !$("mapview").hidden) { layoutMap(); drawMap(); } });
}
