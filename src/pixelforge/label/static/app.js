// pixelforge label: one image at a time, keyboard first. Plain JS, no build step, no CDN.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  session: null, queue: [], done: [], pos: 0, item: null,
  versions: {},        // field -> version this page last saw (sent as base_version)
  boxes: [], selected: -1, pendingRating: {}, lastNotice: 0,
  tag: sessionStorage.getItem("pixelforge-queue-tag"),  // the queue: samples with this tag, or all (null)
};

function uuid() {
  const a = new Uint8Array(16);
  crypto.getRandomValues(a);
  return Array.from(a, (b) => b.toString(16).padStart(2, "0")).join("");
}

function annotator() {
  const v = $("annotator").value.trim();
  return v || "annotator";
}

async function api(path, body) {
  const opts = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  };
  const r = await fetch(path, opts);
  const data = await r.json();
  if (!r.ok) throw new Error(data.error || r.statusText);
  return data;
}

function toast(text) {
  const div = document.createElement("div");
  div.className = "toast";
  div.textContent = text;
  $("toasts").prepend(div);
  setTimeout(() => div.remove(), 15000);
}

function showProgress(p) {
  $("progress").textContent = `${p.done} / ${p.total} done`;
}

async function save(field, value) {
  const key = state.item.key;
  const res = await api("/api/annotate", {
    key, field, value, annotator: annotator(), base_version: state.versions[field] || 0, client_id: uuid(),
  });
  state.versions[field] = res.version;
  if (res.conflict) {
    toast(`${key}: your ${field} replaced an edit by ${res.conflict.annotator} you had not seen ` +
          `(theirs: ${JSON.stringify(res.conflict.value)}). Both are in the history.`);
  }
  showProgress(res);
  if (field === "status") state.done[state.pos] = true;
  return res;
}

function setQueueTag(tag) {
  state.tag = tag;
  if (tag) sessionStorage.setItem("pixelforge-queue-tag", tag);
  else sessionStorage.removeItem("pixelforge-queue-tag");
}

async function loadQueue() {
  const filter = state.tag ? `&tag=${encodeURIComponent(state.tag)}` : "";
  const q = await api(`/api/queue?offset=0&limit=100000${filter}`);
  state.queue = q.keys;
  state.done = q.finished;
  showProgress(q);
  $("queueinfo").hidden = !state.tag;
  $("queuetag").textContent = state.tag ? `queue: tagged "${state.tag}" (${q.keys.length})` : "";
}

function classOf(n) { return state.session.classes[n - 1]; }

async function show(pos) {
  if (!state.queue.length) { $("status").textContent = "nothing to label"; return; }
  state.pos = Math.max(0, Math.min(pos, state.queue.length - 1));
  const key = state.queue[state.pos];
  history.replaceState(null, "", `#${encodeURIComponent(key)}`);
  const item = await api(`/api/item/${encodeURIComponent(key)}`);
  state.item = item;
  state.versions = {};
  for (const [f, c] of Object.entries(item.current)) state.versions[f] = c.version;
  const cur = (f, dflt) => (f in item.current ? item.current[f].value : dflt);
  state.boxes = JSON.parse(JSON.stringify(cur("boxes", item.boxes || [])));
  state.selected = -1;
  state.pendingRating = {};
  $("position").textContent = `${state.pos + 1} of ${state.queue.length}: ${key}`;
  const status = cur("status", null);
  $("status").textContent = status ? `${status} (${item.current.status.annotator})` : "to do";
  $("status").dataset.status = status || "";
  renderImages(item);
  const task = state.session.task;
  if (task === "classify" || task === "review" || task === "boxes") renderClasses(cur("label", item.label));
  if (item.suggested_label) {
    const c = item.suggested_confidence == null ? "" : ` (${(100 * item.suggested_confidence).toFixed(0)}%)`;
    $("suggestion").textContent = `suggested: ${item.suggested_label}${c}` +
      (item.label_issue ? " · suspected label error" : "");
  } else {
    $("suggestion").textContent = item.label_issue ? "suspected label error" : "";
  }
  if (task === "caption" || task === "review") $("caption").value = cur("caption", item.caption || "");
  if (task === "rate") renderRatings(item);
  if (task === "compare") $("prompt").textContent = item.prompt || "";
  else $("prompt").textContent = task === "rate" ? `prompt: ${item.caption || ""}` : "";
  renderBoxList();
  $("tags").textContent = "tags" in item.current && item.current.tags.value.length ?
    `tags: ${item.current.tags.value.join(", ")}` : "";
}

function renderImages(item) {
  const holder = $("images");
  holder.replaceChildren();
  item.images.forEach((src, i) => {
    const frame = document.createElement("div");
    frame.className = "frame";
    frame.dataset.index = i;
    const img = document.createElement("img");
    img.src = src;
    img.alt = item.key;
    img.draggable = false;
    img.addEventListener("load", drawBoxes);
    frame.append(img);
    holder.append(frame);
  });
  const task = state.session.task;
  if (task === "boxes" || task === "review") attachBoxEditor(holder.firstChild);
}

function renderClasses(label) {
  const div = $("classes");
  div.replaceChildren();
  state.session.classes.forEach((name, i) => {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = i < 9 ? `${i + 1} · ${name}` : name;
    b.dataset.label = name;
    if (name === label) b.className = "current";
    b.addEventListener("click", () => chooseLabel(name));
    div.append(b);
  });
}

function renderRatings(item) {
  const div = $("ratings");
  div.hidden = false;
  div.replaceChildren();
  for (const f of ["realism", "faithfulness"]) {
    const row = document.createElement("div");
    row.append(`${f}: `);
    const cur = f in item.current ? item.current[f].value : null;
    for (let s = 1; s <= 5; s++) {
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = s;
      if (cur === s) b.className = "current";
      b.addEventListener("click", () => rate(f, s));
      row.append(b);
    }
    div.append(row);
  }
}

// ---- boxes: drag on the image to draw, drag a box to move it, Delete removes the selected one ----
function scaleOf(frame) {
  const img = frame.querySelector("img");
  return img.clientWidth / (state.item.width || img.naturalWidth || 1);
}

function drawBoxes() {
  const frame = $("images").firstChild;
  if (!frame || !state.item) return;
  frame.querySelectorAll(".box").forEach((b) => b.remove());
  const task = state.session.task;
  if (task !== "boxes" && task !== "review") return;
  const s = scaleOf(frame);
  state.boxes.forEach((b, i) => {
    const d = document.createElement("div");
    d.className = "box" + (i === state.selected ? " selected" : "");
    d.dataset.index = i;
    d.style.left = `${b.x0 * s}px`;
    d.style.top = `${b.y0 * s}px`;
    d.style.width = `${(b.x1 - b.x0) * s}px`;
    d.style.height = `${(b.y1 - b.y0) * s}px`;
    if (b.label) {
      const t = document.createElement("span");
      t.textContent = b.label;
      d.append(t);
    }
    frame.append(d);
  });
  renderBoxList();
}

function renderBoxList() {
  const task = state.session && state.session.task;
  $("boxlist").textContent = (task === "boxes" || task === "review") ?
    `${state.boxes.length} box(es)` + (state.selected >= 0 ? ` · #${state.selected + 1} selected (Delete removes)` : "") : "";
}

function attachBoxEditor(frame) {
  let drag = null;
  const point = (e) => {
    const r = frame.getBoundingClientRect();
    const s = scaleOf(frame);
    const clamp = (v, hi) => Math.max(0, Math.min(hi, v));
    return [clamp((e.clientX - r.left) / s, state.item.width), clamp((e.clientY - r.top) / s, state.item.height)];
  };
  frame.addEventListener("mousedown", (e) => {
    e.preventDefault();
    const [x, y] = point(e);
    const hit = e.target.closest(".box");
    if (hit) {
      state.selected = Number(hit.dataset.index);
      drag = { mode: "move", x, y, orig: { ...state.boxes[state.selected] } };
    } else {
      state.boxes.push({ x0: x, y0: y, x1: x, y1: y, label: currentLabel() });
      state.selected = state.boxes.length - 1;
      drag = { mode: "draw", x, y };
    }
    drawBoxes();
  });
  window.addEventListener("mousemove", (e) => {
    if (!drag) return;
    const [x, y] = point(e);
    const b = state.boxes[state.selected];
    if (drag.mode === "draw") {
      Object.assign(b, { x0: Math.min(drag.x, x), y0: Math.min(drag.y, y), x1: Math.max(drag.x, x), y1: Math.max(drag.y, y) });
    } else {
      const w = drag.orig.x1 - drag.orig.x0, h = drag.orig.y1 - drag.orig.y0;
      const nx = Math.max(0, Math.min(state.item.width - w, drag.orig.x0 + x - drag.x));
      const ny = Math.max(0, Math.min(state.item.height - h, drag.orig.y0 + y - drag.y));
      Object.assign(b, { x0: nx, y0: ny, x1: nx + w, y1: ny + h });
    }
    drawBoxes();
  });
  window.addEventListener("mouseup", async () => {
    if (!drag) return;
    const mode = drag.mode;
    drag = null;
    const b = state.boxes[state.selected];
    if (mode === "draw" && (b.x1 - b.x0 < 0.5 || b.y1 - b.y0 < 0.5)) {  // a click, not a box
      state.boxes.splice(state.selected, 1);
      state.selected = -1;
      drawBoxes();
      return;
    }
    drawBoxes();
    await saveBoxes();
  });
}

function currentLabel() {
  const cur = document.querySelector("#classes button.current");
  return cur ? cur.dataset.label : null;
}

async function saveBoxes() {
  try {
    await save("boxes", state.boxes);
  } catch (err) { toast(`boxes not saved: ${err.message}`); }
}

// ---- actions ----
async function chooseLabel(name) {
  const task = state.session.task;
  if ((task === "boxes" || task === "review") && state.selected >= 0) {  // relabel the selected box
    state.boxes[state.selected].label = name;
    drawBoxes();
    await saveBoxes();
    return;
  }
  await save("label", name);
  renderClasses(name);
  if (task === "classify") {
    await save("status", "accepted");
    await show(state.pos + 1);
  }
}

async function accept() {
  const task = state.session.task, item = state.item, cur = item.current;
  if (task === "classify" && !("label" in cur)) {
    const label = item.label || item.suggested_label;  // accepting takes the shown label or the suggestion
    if (label) await save("label", label);
  }
  if (task === "caption" || task === "review") await saveCaption();
  await save("status", "accepted");
  await show(state.pos + 1);
}

async function saveCaption() {
  const text = $("caption").value.trim();
  const cur = state.item.current.caption;
  if (cur ? cur.value !== text : text !== (state.item.caption || "")) {
    await save("caption", text);
    state.item.current.caption = { value: text, version: state.versions.caption };
  }
}

async function skip() {
  await save("status", "skipped");
  await show(state.pos + 1);
}

async function rate(field, score) {
  await save(field, score);
  state.pendingRating[field] = score;
  state.item.current[field] = { value: score, version: state.versions[field] };
  renderRatings(state.item);
  if ("realism" in state.item.current && "faithfulness" in state.item.current) {
    await save("status", "accepted");
    await show(state.pos + 1);
  }
}

async function compare(choice) {
  await save("compare", choice);
  await save("status", "accepted");
  await show(state.pos + 1);
}

function onKey(e) {
  const typing = e.target.tagName === "TEXTAREA" || e.target.tagName === "INPUT";
  if (typing) {  // before the first item has loaded too: Escape always leaves a field
    if (e.key === "Escape") e.target.blur();
    else if (e.target.id === "caption" && e.key === "Enter" && !e.shiftKey && state.item) { e.preventDefault(); accept(); }
    return;
  }
  if (!state.session || !state.item) return;
  const task = state.session.task;
  if (!$("mapview").hidden) {  // the map has the keyboard: m or Escape goes back to the image
    if (e.key === "m" || e.key === "Escape") closeMap();
    return;
  }
  if (e.key === "m" && task !== "compare") { openMap(); return; }
  const n = Number(e.key);
  if (e.key === "ArrowRight" || e.key === "ArrowDown") { e.preventDefault(); show(state.pos + 1); }
  else if (e.key === "ArrowLeft" || e.key === "ArrowUp") { e.preventDefault(); show(state.pos - 1); }
  else if (e.key === "Enter") { e.preventDefault(); accept(); }
  else if (e.key === "s") skip();
  else if ((e.key === "Delete" || e.key === "Backspace") && state.selected >= 0) {
    state.boxes.splice(state.selected, 1);
    state.selected = -1;
    drawBoxes();
    saveBoxes();
  } else if (task === "compare" && n >= 1 && n <= 3) compare(["left", "right", "tie"][n - 1]);
  else if (task === "rate" && n >= 1 && n <= 5) rate("realism" in state.pendingRating ? "faithfulness" : "realism", n);
  else if (n >= 1 && n <= 9 && classOf(n) && task !== "caption") chooseLabel(classOf(n));
  else if (e.key === "c" && (task === "caption" || task === "review")) { e.preventDefault(); $("caption").focus(); }
}

async function pollNotices() {
  try {
    const r = await api(`/api/notices?annotator=${encodeURIComponent(annotator())}&after=${state.lastNotice}`);
    for (const n of r.notices) {
      state.lastNotice = Math.max(state.lastNotice, n.id);
      toast(`${n.key}: ${n.by} replaced your ${n.field} (${JSON.stringify(n.your_value)} -> ${JSON.stringify(n.value)})`);
    }
  } catch (err) { /* the next poll retries */ }
}

async function main() {
  const mapFirst = location.hash === "#!map";
  if (location.search.includes("token=")) history.replaceState(null, "", location.pathname);  // the cookie holds it now
  $("annotator").value = localStorage.getItem("pixelforge-annotator") || "";
  $("annotator").addEventListener("change", () => localStorage.setItem("pixelforge-annotator", $("annotator").value.trim()));
  state.session = await api("/api/session");
  const task = state.session.task;
  $("dataset").textContent = state.session.dataset;
  $("task").textContent = task;
  $("captionbox").hidden = !(task === "caption" || task === "review");
  $("compare").hidden = task !== "compare";
  $("compare").querySelectorAll("button").forEach((b) => b.addEventListener("click", () => compare(b.dataset.choice)));
  $("savecaption").addEventListener("click", () => saveCaption());
  $("help").textContent = {
    classify: "1-9 label and next · Enter accept shown label · s skip · arrows move",
    boxes: "drag on the image to draw · drag a box to move · Delete removes · 1-9 label the selected box · Enter accept",
    caption: "c or click to edit · Enter saves and accepts · Shift+Enter new line · s skip",
    review: "1-9 label · draw boxes · c edit caption · Enter accept · s skip",
    rate: "1-5 realism, then 1-5 faithfulness to the prompt · s skip",
    compare: "1 left better · 2 right better · 3 tie · s skip (models are hidden, order random)",
  }[task];
  document.addEventListener("keydown", onKey);
  window.addEventListener("resize", drawBoxes);
  $("mapbutton").hidden = task === "compare";
  initMap();
  $("queueall").addEventListener("click", async () => { setQueueTag(null); await loadQueue(); await show(0); });
  await loadQueue();
  if (state.tag && !state.queue.length) { setQueueTag(null); await loadQueue(); }  // the tag is gone
  const want = decodeURIComponent(location.hash.slice(1));
  const at = state.queue.indexOf(want);
  const firstTodo = state.done.indexOf(false);
  await show(at >= 0 ? at : (firstTodo >= 0 ? firstTodo : 0));
  if (mapFirst) await openMap();
  setInterval(pollNotices, 4000);
}

main().catch((err) => toast(`error: ${err.message}`));
