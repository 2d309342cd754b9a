// soundalike web page: search, recommendations with previews, a force graph of the neighbourhood, a
// PCA map of the library coloured by genre or cluster, a panel per cluster, and (serving with a listener's
// profile) like/dislike buttons, a "for you" list and a taste ranking. Plain JavaScript, no external files: it must work offline.
"use strict";

const $ = (id) => document.getElementById(id);
const PALETTE = ["#f0a830", "#4cc9f0", "#f72585", "#80ed99", "#b5179e", "#ffd166", "#06d6a0", "#ef476f",
  "#118ab2", "#c77dff", "#ff9f1c", "#2ec4b6", "#e76f51", "#a7c957", "#8d99ae"];
const genreColour = new Map();
function colour(genre) {
  const g = genre || "-";
  if (!genreColour.has(g)) genreColour.set(g, PALETTE[genreColour.size % PALETTE.length]);
  return genreColour.get(g);
}
const audioUrl = (id) => "/api/audio?id=" + encodeURIComponent(id);

let current = null; // { kind: "song", id } or { kind: "upload", file }
let mapData = null;
let highlighted = new Set();
let queryId = null;
let previews = true;
let clusters = null; // /api/clusters, when the store has clusters
let shownCluster = null;
let taste = false; // serving with a profile
const marks = new Map(); // song id -> "like" | "dislike"

const clusterColour = (c) => (c === null || c === undefined ? "#555" : PALETTE[c % PALETTE.length]);
const colourBy = () => (clusters && $("colour-by").value === "cluster" ? "cluster" : "genre");
const pointColour = (p) => (colourBy() === "cluster" ? clusterColour(p.cluster) : colour(p.genre));

function status(msg, isError) {
  $("status").textContent = msg || "";
  $("status").className = isError ? "error" : "";
}

async function getJson(url, opts) {
  const r = await fetch(url, opts);
  const body = await r.json().catch(() => ({ error: r.statusText }));
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

function play(id, title) {
  if (!previews) { status("previews are off: the library folder is not on the server's machine", true); return; }
  const p = $("player");
  p.src = audioUrl(id);
  p.play().catch((e) => status("cannot play: " + e.message, true));
  $("now-playing").textContent = "playing: " + (title || id);
}

function options() {
  const q = new URLSearchParams();
  q.set("k", $("k").value || "10");
  if ($("genre").value) q.set("genre", $("genre").value);
  if ($("same-genre").checked) q.set("same_genre", "true");
  if ($("exclude-artist").checked) q.set("exclude_same_artist", "true");
  if ($("exclude-group").checked) q.set("exclude_same_group", "true");
  if ($("bpm").value.trim()) q.set("bpm", $("bpm").value.trim());
  if ($("bpm-fold").checked) q.set("bpm_fold", "true");
  if ($("key-compatible").checked) q.set("key_compatible", "true");
  if ($("tag").value) q.set("tags", $("tag").value);
  if (clusters && $("same-cluster").checked) q.set("same_cluster", "true");
  if (taste && $("taste-rank").checked) q.set("taste", "true");
  return q;
}

// The address bar follows the song on screen and its filters (`?song=ID&genre=G&k=5&same_genre=1...`), so
// a link opens the same view and the back button returns to the previous song.
const FLAGS = [["same-genre", "same_genre"], ["exclude-artist", "exclude_artist"], ["exclude-group", "exclude_group"],
  ["same-cluster", "same_cluster"], ["taste-rank", "taste"], ["bpm-fold", "bpm_fold"], ["key-compatible", "key_compatible"]];
function addressOf(id) {
  const q = new URLSearchParams();
  q.set("song", id);
  if ($("genre").value) q.set("genre", $("genre").value);
  if (($("k").value || "10") !== "10") q.set("k", $("k").value);
  if ($("bpm").value.trim()) q.set("bpm", $("bpm").value.trim());
  if ($("tag").value) q.set("tag", $("tag").value);
  for (const [el, key] of FLAGS) if ($(el).checked) q.set(key, "1");
  return "?" + q;
}
// Sets the controls from an address; returns its song (or null).
function applyAddress(search) {
  const q = new URLSearchParams(search);
  const g = q.get("genre") || "";
  $("genre").value = [...$("genre").options].some((o) => o.value === g) ? g : "";
  $("k").value = q.get("k") || "10";
  $("bpm").value = q.get("bpm") || "";
  const t = q.get("tag") || "";
  $("tag").value = [...$("tag").options].some((o) => o.value === t) ? t : "";
  for (const [el, key] of FLAGS) $(el).checked = q.get(key) === "1";
  return q.get("song");
}

// `how`: "push" (a new song: a new history entry), "replace" (same song, other filters) or "none" (the
// view is being restored from the address).
let asked = 0; // the newest request: an older answer that arrives late is dropped
async function showSimilar(id, how = "push") {
  current = { kind: "song", id };
  const q = options();
  q.set("id", id);
  if (how !== "none" && location.search !== addressOf(id)) {
    if (how === "push") history.pushState({ song: id }, "", addressOf(id));
    else history.replaceState({ song: id }, "", addressOf(id));
  }
  const mine = ++asked;
  status("searching…");
  try {
    const res = await getJson("/api/similar?" + q);
    if (mine !== asked) return;
    render(res);
    status((res.notes || []).join("; "));
  } catch (e) {
    if (mine === asked) status(e.message, true);
  }
}
window.addEventListener("popstate", () => {
  const id = applyAddress(location.search);
  if (id) showSimilar(id, "none");
});

async function uploadFile(file) {
  current = { kind: "upload", file };
  const q = options();
  q.set("name", file.name);
  const mine = ++asked;
  status("listening to " + file.name + "…");
  try {
    const res = await getJson("/api/similar/upload?" + q, { method: "POST", body: file, headers: { "X-Soundalike": "1" } });
    if (mine !== asked) return;
    render(res);
    status("");
  } catch (e) {
    if (mine === asked) status(e.message, true);
  }
}

function rerun() {
  if (!current) return;
  if (current.kind === "song") showSimilar(current.id, "replace");
  else uploadFile(current.file);
}

// The order of the results list: by similarity (as answered), by tempo, or by key (Camelot: 1A 1B 2A ...);
// songs without a tempo or key go last. The graph keeps the similarity order.
let lastAnswer = null;
function ordered(results) {
  const by = $("sort").value;
  if (by === "score") return results;
  const camelot = (k) => (k ? parseInt(k, 10) * 2 + (k.endsWith("B") ? 1 : 0) : Infinity);
  const value = by === "bpm" ? (r) => (r.bpm ? r.bpm : Infinity) : (r) => camelot(r.key);
  return [...results].sort((a, b) => value(a) - value(b) || b.score - a.score);
}

function render(res) {
  lastAnswer = res;
  const query = res.query[0] || {};
  // The search box names the song the page is about (after a deep link, back or a click in the graph
  // too), unless someone is typing in it.
  if (current.kind === "song" && query.title && document.activeElement !== $("search")) $("search").value = query.title;
  const genre = $("genre").value;
  $("query-title").textContent = (genre ? genre + " songs" : "Songs") + " that sound like " + (query.title || "this");
  const ol = $("results");
  ol.innerHTML = "";
  ol.dataset.query = query.id || "";
  for (const r of ordered(res.results)) {
    const li = songItem(r, { score: true, group: true });
    li.className = "result";
    ol.append(li);
  }
  if (!res.results.length) ol.innerHTML = "<li class='muted'>no song passes these filters</li>";
  drawGraph(query, res.results);
  highlighted = new Set(res.results.map((r) => r.id).concat(query.id ? [query.id] : []));
  queryId = query.id || null;
  drawMap();
  // A song of the library shows its cluster.
  if (clusters && query.cluster !== undefined && query.cluster !== null) showCluster(query.cluster, false);
}

// A song as a list item: play button, (its score,) title linking to its neighbours, artist and genre (and
// group), like/dislike buttons.
function songItem(r, opts = {}) {
  const li = document.createElement("li");
  li.dataset.id = r.id;
  if (r.bpm) li.dataset.bpm = r.bpm;
  if (r.key) li.dataset.key = r.key;
  const btn = document.createElement("button");
  btn.className = "play";
  btn.title = "play";
  btn.textContent = "▶";
  btn.onclick = () => play(r.id, r.title);
  btn.disabled = !previews;
  const parts = [btn];
  if (opts.score) {
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = r.score.toFixed(3);
    parts.push(score);
  }
  const a = document.createElement("a");
  a.href = "#";
  a.textContent = r.title;
  a.title = "songs like this one";
  a.onclick = (e) => { e.preventDefault(); showSimilar(r.id); };
  const meta = document.createElement("span");
  meta.className = "muted";
  const bpm = r.bpm ? r.bpm.toFixed(1) + " BPM" : null;
  // Loudness, for levelling one track to the next: integrated (EBU R128) and, in the tooltip, the true peak.
  const loud = r.lufs != null ? r.lufs.toFixed(1) + " LUFS" : null;
  meta.textContent = " " + [r.artist, r.genre, opts.group ? r.group : null, bpm, r.key, loud].filter(Boolean).join(" · ");
  if (r.lufs != null) {
    li.dataset.lufs = r.lufs;
    meta.title = "integrated loudness " + r.lufs.toFixed(1) + " LUFS (EBU R128)" +
      (r.true_peak_db != null ? ", true peak " + r.true_peak_db.toFixed(1) + " dBTP" : "");
  }
  if (r.true_peak_db != null) li.dataset.truePeak = r.true_peak_db;
  li.append(...parts, a, meta, ...tagChips(r), ...markButtons(r.id));
  return li;
}

// A song's three most probable tags as chips: each a tagger's guess with its probability; a click keeps
// the recommendations to songs with that tag.
function tagChips(r) {
  return (r.tags || []).slice(0, 3).map((t) => {
    const c = document.createElement("button");
    c.type = "button";
    c.className = "tag";
    c.dataset.tag = t.tag;
    c.textContent = t.tag + " " + Math.round(t.prob * 100) + "%";
    c.title = "a guess of the " + (t.source === "msd" ? "MSD_musicnn" : "MTT_musicnn") + " tagger, probability " + t.prob.toFixed(2) + "; click: only songs with this tag";
    c.onclick = () => {
      if (![...$("tag").options].some((o) => o.value === t.tag)) {
        const o = document.createElement("option");
        o.value = t.tag; o.textContent = t.tag;
        $("tag").append(o);
      }
      $("tag").value = t.tag;
      rerun();
    };
    return c;
  });
}

// Like / dislike buttons (serving with a profile); clicking the lit one again forgets the mark.
function markButtons(id) {
  if (!taste) return [];
  return ["like", "dislike"].map((m) => {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "mark " + m + (marks.get(id) === m ? " on" : "");
    b.dataset.id = id;
    b.dataset.mark = m;
    b.title = m;
    b.textContent = m === "like" ? "+" : "−";
    b.onclick = () => setMark(id, marks.get(id) === m ? "none" : m);
    return b;
  });
}

async function setMark(id, mark) {
  try {
    const res = await getJson("/api/taste/mark", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ id, mark }) });
    showTaste(res);
    for (const b of document.querySelectorAll("button.mark")) b.classList.toggle("on", marks.get(b.dataset.id) === b.dataset.mark);
    if ($("taste-rank").checked) rerun();
  } catch (e) {
    status(e.message, true);
  }
}

function showTaste(res) {
  marks.clear();
  for (const m of res.marks) marks.set(m.id, m.mark);
  $("taste-info").textContent = "(" + res.likes + " likes, " + res.dislikes + " dislikes" + (res.model ? "; " + res.model : "; like a song to start") + ")";
  const ol = $("for-you");
  ol.innerHTML = "";
  for (const r of res.for_you) {
    const li = songItem(r);
    const p = document.createElement("span");
    p.className = "score";
    p.textContent = " " + Math.round(100 * r.p_like) + "%";
    li.append(p);
    ol.append(li);
  }
  ol.dataset.count = String(res.for_you.length);
}

function bars(shares, cls) {
  const div = document.createElement("div");
  for (const g of shares) {
    const row = document.createElement("div");
    row.className = "bar " + cls;
    const b = document.createElement("b");
    b.style.width = Math.max(2, Math.round(160 * g.share)) + "px";
    row.append(b, document.createTextNode(g.genre + " " + Math.round(100 * g.share) + "%"));
    div.append(row);
  }
  return div;
}

// The cluster panel: its genres (tags and the model's) as bars, and songs nearest its centre or at random.
async function showCluster(n, random) {
  const q = new URLSearchParams({ id: String(n) });
  if (random) q.set("random", "10"); else q.set("k", "8");
  try {
    const res = await getJson("/api/cluster?" + q);
    const c = res.cluster;
    shownCluster = n;
    $("cluster-panel").dataset.cluster = String(n);
    $("cluster-title").textContent = "Cluster " + n + " · " + c.size + " songs (" + Math.round(100 * c.share) + "%) · cohesion " +
      c.cohesion.toFixed(2) + " · near clusters " + c.nearest.map((x) => x.cluster).join(", ");
    const g = $("cluster-genres");
    g.innerHTML = "";
    if (c.genres_tag.length) { g.append(document.createTextNode("from tags")); g.append(bars(c.genres_tag, "tag")); }
    g.append(document.createTextNode("the model's guess"));
    g.append(bars(c.genres_predicted, "model"));
    $("cluster-songs-title").textContent = random ? res.songs.length + " songs at random" : "nearest its centre";
    const ol = $("cluster-songs");
    ol.innerHTML = "";
    for (const r of res.songs) ol.append(songItem(r));
    ol.dataset.random = String(random);
    for (const b of $("cluster-chips").children) b.classList.toggle("active", b.dataset.cluster === String(n));
  } catch (e) {
    status(e.message, true);
  }
}

// Force graph: the query fixed at the centre, each match on a spring whose rest length grows with its
// cosine distance, all nodes repelling each other. Deterministic: same input, same picture.
function drawGraph(query, results) {
  const svg = $("graph");
  const NS = "http://www.w3.org/2000/svg";
  svg.innerHTML = "";
  const dists = results.map((r) => 1 - r.score);
  const dmax = Math.max(1e-6, ...dists);
  const nodes = results.map((r, i) => {
    const a = (2 * Math.PI * i) / Math.max(1, results.length);
    const len = 60 + 140 * (dists[i] / dmax);
    return { r, len, x: Math.cos(a) * len, y: Math.sin(a) * len };
  });
  for (let it = 0; it < 300; it++) {
    for (const n of nodes) {
      const d = Math.hypot(n.x, n.y) || 1e-3;
      const f = (n.len - d) * 0.1;
      n.vx = (n.x / d) * f;
      n.vy = (n.y / d) * f;
    }
    for (let i = 0; i < nodes.length; i++) {
      for (let j = i + 1; j < nodes.length; j++) {
        const a = nodes[i], b = nodes[j];
        let dx = a.x - b.x, dy = a.y - b.y;
        const d2 = Math.max(dx * dx + dy * dy, 1);
        const f = 400 / d2;
        const d = Math.sqrt(d2);
        dx /= d; dy /= d;
        a.vx += dx * f; a.vy += dy * f; b.vx -= dx * f; b.vy -= dy * f;
      }
    }
    for (const n of nodes) { n.x += n.vx; n.y += n.vy; }
  }
  for (const n of nodes) {
    const l = document.createElementNS(NS, "line");
    l.setAttribute("x1", 0); l.setAttribute("y1", 0);
    l.setAttribute("x2", n.x.toFixed(1)); l.setAttribute("y2", n.y.toFixed(1));
    svg.append(l);
  }
  const node = (x, y, rad, fill, label, onclick, cls) => {
    const c = document.createElementNS(NS, "circle");
    c.setAttribute("cx", x.toFixed(1)); c.setAttribute("cy", y.toFixed(1)); c.setAttribute("r", rad);
    c.setAttribute("fill", fill);
    c.setAttribute("class", cls);
    const t = document.createElementNS(NS, "title");
    t.textContent = label;
    c.append(t);
    if (onclick) c.addEventListener("click", onclick);
    const tx = document.createElementNS(NS, "text");
    tx.setAttribute("x", (x + rad + 2).toFixed(1)); tx.setAttribute("y", (y + 4).toFixed(1));
    tx.textContent = label.length > 22 ? label.slice(0, 21) + "…" : label;
    svg.append(c, tx);
  };
  node(0, 0, 12, "#ffffff", query.title || "query", null, "node query");
  nodes.forEach((n, i) => node(n.x, n.y, 9 - Math.min(5, i / 3), colour(n.r.genre),
    n.r.title + " (" + n.r.score.toFixed(3) + ")", () => play(n.r.id, n.r.title), "node match"));
  svg.dataset.nodes = String(nodes.length + 1);
}

function drawMap() {
  const cv = $("map");
  if (!mapData) return;
  const ctx = cv.getContext("2d");
  const W = cv.width, H = cv.height, pad = 14;
  ctx.clearRect(0, 0, W, H);
  const toX = (x) => pad + ((x + 1) / 2) * (W - 2 * pad);
  const toY = (y) => pad + ((1 - y) / 2) * (H - 2 * pad);
  for (const p of mapData.points) {
    ctx.globalAlpha = highlighted.size && !highlighted.has(p.id) ? 0.35 : 1;
    ctx.fillStyle = pointColour(p);
    ctx.beginPath();
    ctx.arc(toX(p.x), toY(p.y), p.id === queryId ? 8 : highlighted.has(p.id) ? 5 : 3, 0, 2 * Math.PI);
    ctx.fill();
    if (highlighted.has(p.id)) { ctx.strokeStyle = "#fff"; ctx.lineWidth = p.id === queryId ? 3 : 1; ctx.stroke(); }
  }
  ctx.globalAlpha = 1;
  cv.dataset.points = String(mapData.points.length);
  const legend = $("legend");
  legend.innerHTML = "";
  const entries = colourBy() === "cluster"
    ? clusters.clusters.map((c) => [c.cluster + " " + ((c.genres_tag[0] || c.genres_predicted[0] || {}).genre || ""), clusterColour(c.cluster), c.cluster])
    : [...genreColour].map(([g, c]) => [g, c, null]);
  for (const [g, c, n] of entries) {
    const s = document.createElement("span");
    const i = document.createElement("i");
    i.style.background = c;
    s.append(i, document.createTextNode(g));
    if (n !== null) { s.className = "clickable"; s.dataset.cluster = String(n); s.onclick = () => showCluster(n, false); }
    legend.append(s);
  }
  legend.dataset.by = colourBy();
}

$("map").addEventListener("click", (e) => {
  if (!mapData) return;
  const cv = $("map");
  const rect = cv.getBoundingClientRect();
  const mx = ((e.clientX - rect.left) / rect.width) * cv.width;
  const my = ((e.clientY - rect.top) / rect.height) * cv.height;
  const pad = 14;
  let best = null, bd = 1e9;
  for (const p of mapData.points) {
    const x = pad + ((p.x + 1) / 2) * (cv.width - 2 * pad);
    const y = pad + ((1 - p.y) / 2) * (cv.height - 2 * pad);
    const d = Math.hypot(x - mx, y - my);
    if (d < bd) { bd = d; best = p; }
  }
  if (best && bd < 12) { play(best.id, best.title); showSimilar(best.id); }
});

// Search box with suggestions (debounced), keyboard and mouse.
let timer = null, suggestions = [], active = -1;
function showSuggestions() {
  const ul = $("suggestions");
  ul.innerHTML = "";
  suggestions.forEach((s, i) => {
    const li = document.createElement("li");
    li.textContent = s.title + (s.artist ? " — " + s.artist : "") + (s.genre ? " [" + s.genre + "]" : "");
    li.dataset.id = s.id;
    if (i === active) li.className = "active";
    li.addEventListener("mousedown", (e) => { e.preventDefault(); pick(s); });
    ul.append(li);
  });
  ul.hidden = suggestions.length === 0;
}
function pick(s) {
  $("search").value = s.title;
  suggestions = []; active = -1; showSuggestions();
  showSimilar(s.id);
}
$("search").addEventListener("input", () => {
  clearTimeout(timer);
  const q = $("search").value.trim();
  if (!q) { suggestions = []; showSuggestions(); return; }
  timer = setTimeout(async () => {
    try {
      suggestions = (await getJson("/api/search?limit=10&q=" + encodeURIComponent(q))).results;
      active = -1;
      showSuggestions();
    } catch (e) { status(e.message, true); }
  }, 120);
});
$("search").addEventListener("keydown", (e) => {
  if (e.key === "ArrowDown") { active = Math.min(active + 1, suggestions.length - 1); showSuggestions(); e.preventDefault(); }
  else if (e.key === "ArrowUp") { active = Math.max(active - 1, 0); showSuggestions(); e.preventDefault(); }
  else if (e.key === "Enter" && suggestions.length) pick(suggestions[Math.max(active, 0)]);
  else if (e.key === "Escape") { suggestions = []; showSuggestions(); }
});
$("search").addEventListener("blur", () => setTimeout(() => { suggestions = []; showSuggestions(); }, 100));
$("sort").addEventListener("change", () => { if (lastAnswer) render(lastAnswer); });
for (const id of ["genre", "same-genre", "exclude-artist", "exclude-group", "same-cluster", "taste-rank", "k", "bpm", "bpm-fold", "key-compatible", "tag"]) $(id).addEventListener("change", rerun);
$("colour-by").addEventListener("change", drawMap);
$("cluster-random").addEventListener("click", () => { if (shownCluster !== null) showCluster(shownCluster, true); });

// Drag and drop (or click) a file.
const drop = $("drop");
drop.addEventListener("click", () => $("file").click());
$("file").addEventListener("change", () => { if ($("file").files[0]) uploadFile($("file").files[0]); });
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  if (e.dataTransfer.files[0]) uploadFile(e.dataTransfer.files[0]);
});

// The header line: the library, and when the served data was loaded (and what changed then). The server
// follows its store, so the line is refreshed now and then; a new load redraws the map.
let generation = null;
function showStats(st) {
  const l = st.loaded || {};
  const at = l.at ? new Date(l.at * 1000).toLocaleTimeString() : "";
  const c = l.changes;
  const changed = c ? " (" + ["+" + c.added, "−" + c.removed, c.changed + " changed"].join(", ") + ")" : "";
  $("stats").textContent = st.songs + " songs · " + st.hours.toFixed(1) + " h · model " + st.model + " · " + st.search + " search" +
    (at ? " · loaded " + at + changed : "") + (l.reload_error ? " · not reloaded: " + l.reload_error : "");
  $("stats").dataset.generation = String(l.generation ?? "");
  $("stats").dataset.songs = String(st.songs);
  generation = l.generation ?? null;
}
setInterval(async () => {
  try {
    const before = generation;
    const st = await getJson("/api/stats");
    showStats(st);
    if (before !== null && st.loaded && st.loaded.generation !== before) { mapData = await getJson("/api/map"); drawMap(); }
  } catch (e) { /* the next tick tries again */ }
}, 10000);

(async function init() {
  try {
    const st = await getJson("/api/stats");
    showStats(st);
    for (const g of st.genres) {
      const o = document.createElement("option");
      o.value = g.name; o.textContent = g.name + " (" + g.songs + ")";
      $("genre").append(o);
      colour(g.name);
    }
    // The library's tags with how many songs have each (the taggers' guesses, at 0.2 or more).
    for (const t of st.tags || []) {
      const o = document.createElement("option");
      o.value = t.name; o.textContent = t.name + " (" + t.songs + ")";
      $("tag").append(o);
    }
    $("tag-ctl").hidden = !(st.tags || []).length;
    previews = st.previews;
    if (!st.upload) { drop.textContent = "Uploads are off (start serve with --model)"; drop.style.cursor = "default"; }
    if (st.taste) {
      taste = true;
      $("taste-ctl").hidden = false;
      $("taste-panel").hidden = false;
      showTaste(await getJson("/api/taste"));
    }
    if (st.clusters) {
      clusters = await getJson("/api/clusters");
      $("cluster-ctl").hidden = false;
      $("colour-ctl").hidden = false;
      $("cluster-panel").hidden = false;
      for (const c of clusters.clusters) {
        const b = document.createElement("button");
        b.type = "button";
        b.dataset.cluster = String(c.cluster);
        b.style.borderColor = clusterColour(c.cluster);
        b.textContent = c.cluster + " · " + c.size;
        b.title = "cluster " + c.cluster + ": " + c.genres_predicted.map((g) => g.genre).join(", ");
        b.onclick = () => showCluster(c.cluster, false);
        $("cluster-chips").append(b);
      }
      await showCluster(0, false);
    }
    mapData = await getJson("/api/map");
    drawMap();
    // The first screen: the song the address names, else a song of the library at random (with its
    // neighbours, graph and cluster), so there is something to start from.
    const named = applyAddress(location.search);
    const start = named || (mapData.points.length ? mapData.points[Math.floor(Math.random() * mapData.points.length)].id : null);
    if (start) await showSimilar(start, "replace");
    document.body.dataset.ready = "true";
  } catch (e) {
    status("cannot load the library: " + e.message, true);
  }
})();
