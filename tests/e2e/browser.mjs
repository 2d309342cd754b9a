// Drives the `soundalike serve` page in headless Debian Chromium: search with suggestions, results,
// force graph, a preview that really plays, the target-genre selector, the library map, an upload, and
// (when the store has clusters) the map coloured by cluster, the cluster panel and "same cluster", and
// (serving with a profile) like/dislike marks that change the "for you" list and the taste ranking.
// Usage: node browser.mjs URL AUDIO_FILE [SCREENSHOT.png]. Prints one JSON line; exit code 1 on failure.
import { chromium } from "playwright-core";

const [url, audioFile, shot] = process.argv.slice(2);
const checks = {};
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--autoplay-policy=no-user-gesture-required"],
});
let failed = null;
let page = null;
try {
  page = await browser.newPage({ viewport: { width: 1200, height: 1100 } });
  // After a filter is cleared, wait for the unfiltered list itself (the API's), not for any 10 results:
  // a filtered list of 10 would pass at once, and the next step would act on a list about to be replaced.
  const unfiltered = async () => {
    const qid = await page.evaluate(() => current.id);
    const want = (await (await page.request.get(url + "api/similar?k=10&id=" + encodeURIComponent(qid))).json()).results.map((r) => r.id).join("|");
    await page.waitForFunction((w) => [...document.querySelectorAll("#results li.result")].map((x) => x.dataset.id).join("|") === w, want, { timeout: 10000 });
  };
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  const outside = [];
  page.on("request", (r) => { if (!r.url().startsWith(url)) outside.push(r.url()); });
  await page.goto(url);
  await page.waitForSelector("body[data-ready=true]", { timeout: 15000 });
  const stats = await (await page.request.get(url + "api/stats")).json();
  checks.map_points = Number(await page.getAttribute("#map", "data-points"));
  if (checks.map_points !== stats.songs) throw new Error(`map has ${checks.map_points} points, library ${stats.songs}`);

  // The first screen is not empty: a song of the library with its neighbours, named in the address.
  checks.first_screen_results = await page.locator("#results li.result").count();
  checks.first_screen_song = new URL(page.url()).searchParams.get("song");
  if (!checks.first_screen_results || !checks.first_screen_song) throw new Error("the first screen shows no song");
  const showing = (id) => page.waitForFunction((q) => document.getElementById("results").dataset.query === q &&
    document.querySelectorAll("#results li.result").length > 0, id, { timeout: 10000 });

  // Search with suggestions, pick the first one.
  await page.fill("#search", "battle");
  await page.waitForSelector("#suggestions li", { timeout: 10000 });
  checks.suggestions = await page.locator("#suggestions li").count();
  const picked = await page.locator("#suggestions li").first().getAttribute("data-id");
  await page.locator("#suggestions li").first().dispatchEvent("mousedown");
  await showing(picked);
  checks.results = await page.locator("#results li.result").count();
  if (checks.results !== 10) throw new Error(`expected 10 results, got ${checks.results}`);

  // The address follows the song; following a result to its own neighbours and pressing back returns.
  if (new URL(page.url()).searchParams.get("song") !== picked) throw new Error(`address ${page.url()} after picking ${picked}`);
  const next = await page.locator("#results li.result").nth(1).getAttribute("data-id");
  await page.locator("#results li.result >> nth=1 >> a").click();
  await showing(next);
  checks.followed = new URL(page.url()).searchParams.get("song");
  await page.goBack();
  await showing(picked);
  checks.back_to = await page.evaluate(() => current.id);
  checks.picked = picked;
  if (checks.followed !== next || checks.back_to !== picked) throw new Error(`followed ${checks.followed} (want ${next}), back to ${checks.back_to} (want ${picked})`);

  // A deep link opens the song with its filters.
  {
    const genre = stats.genres.find((g) => g.songs >= 4).name;
    const deep = await browser.newPage();
    deep.on("pageerror", (e) => errors.push(e.message));
    await deep.goto(url + "?song=" + encodeURIComponent(next) + "&genre=" + encodeURIComponent(genre) + "&k=3");
    await deep.waitForSelector("body[data-ready=true]", { timeout: 15000 });
    const seen = await deep.evaluate(() => ({ query: document.getElementById("results").dataset.query,
      genre: document.getElementById("genre").value, k: document.getElementById("k").value,
      search: document.getElementById("search").value,
      results: [...document.querySelectorAll("#results li.result")].map((x) => x.textContent) }));
    await deep.close();
    // The search box names the song the page is about, as it does after picking one.
    const title = (await (await page.request.get(url + "api/similar?k=1&id=" + encodeURIComponent(next))).json()).query[0].title;
    checks.deep_link = { query: seen.query, genre: seen.genre, results: seen.results.length, search: seen.search };
    if (seen.query !== next || seen.genre !== genre || seen.k !== "3" || seen.results.length !== 3 || !seen.results.every((t) => t.includes(genre)) || seen.search !== title)
      throw new Error("deep link opened " + JSON.stringify(seen) + " (title " + title + ")");
  }

  // The force graph: the query plus one node per match, each linked to the centre.
  checks.graph_nodes = await page.locator("#graph circle").count();
  checks.graph_links = await page.locator("#graph line").count();
  if (checks.graph_nodes !== 11 || checks.graph_links !== 10) throw new Error(`graph has ${checks.graph_nodes} nodes, ${checks.graph_links} links`);

  // Tempo and key: sorting by BPM orders the list; a BPM range keeps only songs in it (and says how many
  // songs had no tempo to compare).
  {
    await page.selectOption("#sort", "bpm");
    const bpms = await page.$$eval("#results li.result", (li) => li.map((x) => x.dataset.bpm).filter(Boolean).map(Number));
    checks.sorted_bpms = bpms.length;
    if (bpms.length < 3 || bpms.some((b, i) => i > 0 && b < bpms[i - 1])) throw new Error("results not sorted by BPM: " + bpms);
    await page.selectOption("#sort", "score");
    // Loudness for levelling: each analysed result shows its LUFS, with the true peak in the tooltip, as
    // the API has them.
    const loud = await page.$$eval("#results li.result", (li) => li.filter((x) => x.dataset.lufs).map((x) =>
      ({ id: x.dataset.id, lufs: Number(x.dataset.lufs), peak: Number(x.dataset.truePeak), text: x.querySelector(".muted").textContent, title: x.querySelector(".muted").title })));
    checks.loudness_shown = loud.length;
    const api = (await (await page.request.get(url + "api/similar?k=10&id=" + encodeURIComponent(await page.evaluate(() => current.id)))).json()).results;
    for (const l of loud) {
      const r = api.find((x) => x.id === l.id);
      // (Written as "not within" so that a value missing on the page, NaN here, fails too.)
      if (!r || !(Math.abs(r.lufs - l.lufs) <= 1e-3) || !l.text.includes(r.lufs.toFixed(1) + " LUFS") || r.true_peak_db == null
          || !(Math.abs(r.true_peak_db - l.peak) <= 1e-3) || !l.title.includes(r.true_peak_db.toFixed(1) + " dBTP") || r.true_peak_db < r.lufs)
        throw new Error("loudness shown " + JSON.stringify(l) + " against the API's " + JSON.stringify(r));
    }
    if (loud.length < 3) throw new Error("only " + loud.length + " results show their loudness");
    const lo = Math.floor(bpms[0]), hi = Math.ceil(bpms[Math.floor(bpms.length / 2)]);
    await page.fill("#bpm", `${lo}-${hi}`);
    await page.dispatchEvent("#bpm", "change");
    await page.waitForFunction(([lo, hi]) => {
      const li = [...document.querySelectorAll("#results li.result")];
      return li.length > 0 && li.every((x) => Number(x.dataset.bpm) >= lo && Number(x.dataset.bpm) <= hi);
    }, [lo, hi], { timeout: 10000 });
    checks.bpm_range = { lo, hi, results: await page.locator("#results li.result").count() };
    if (!new URL(page.url()).searchParams.get("bpm")) throw new Error("the address lost the BPM range: " + page.url());
    await page.fill("#bpm", "");
    await page.dispatchEvent("#bpm", "change");
    await unfiltered();
  }

  // Tags: each result shows tag chips (a tagger's guess, with its probability); the tag selector lists the
  // library's tags with counts; a click on a chip keeps the results to songs with that tag, exactly those
  // the API gives, and the address keeps it. (A database library has no tags yet: its stats say so.)
  if ((stats.tags || []).length) {
    const chips = await page.$$eval("#results li.result button.tag", (b) => b.map((x) => ({ text: x.textContent, title: x.title, tag: x.dataset.tag })));
    checks.tag_chips = chips.length;
    if (chips.length < 10 || !chips.every((c) => /\d+%$/.test(c.text) && c.title.includes("guess")))
      throw new Error("tag chips: " + JSON.stringify(chips.slice(0, 3)));
    const options = await page.$$eval("#tag option", (o) => o.map((x) => x.textContent));
    checks.tag_options = options.length;
    if (options.length < 2 || !/\(\d+\)$/.test(options[1])) throw new Error("tag selector: " + JSON.stringify(options));
    const qid = await page.evaluate(() => current.id);
    const tag = chips[0].tag;
    await page.locator("#results li.result button.tag").first().click();
    const want = await (await page.request.get(url + "api/similar?id=" + encodeURIComponent(qid) + "&k=10&tags=" + encodeURIComponent(tag))).json();
    const wantIds = want.results.map((r) => r.id).join("|");
    await page.waitForFunction((w) => [...document.querySelectorAll("#results li.result")].map((x) => x.dataset.id).join("|") === w, wantIds, { timeout: 10000 });
    checks.tag_filter = { tag, results: want.results.length };
    if (new URL(page.url()).searchParams.get("tag") !== tag) throw new Error("the address lost the tag: " + page.url());
    await page.selectOption("#tag", "");
    await unfiltered();
  }

  // Clusters: the panel shows the query song's cluster; a random draw stays inside it; "same cluster"
  // keeps every result in it; the map is coloured by cluster with a legend entry per cluster.
  if (stats.clusters) {
    const m = await (await page.request.get(url + "api/map")).json();
    const clusterOf = Object.fromEntries(m.points.map((p) => [p.id, p.cluster]));
    const qid = await page.evaluate(() => current.id);
    await page.waitForFunction((c) => document.getElementById("cluster-panel").dataset.cluster === String(c), clusterOf[qid], { timeout: 10000 });
    checks.cluster_chips = await page.locator("#cluster-chips button").count();
    checks.legend_by = await page.getAttribute("#legend", "data-by");
    checks.legend_entries = await page.locator("#legend span").count();
    if (checks.cluster_chips !== stats.clusters || checks.legend_by !== "cluster" || checks.legend_entries !== stats.clusters)
      throw new Error(`cluster chips ${checks.cluster_chips}, legend ${checks.legend_by} with ${checks.legend_entries} entries, k ${stats.clusters}`);
    await page.click("#cluster-random");
    await page.waitForSelector("#cluster-songs[data-random=true] li", { timeout: 10000 });
    const drawn = await page.$$eval("#cluster-songs li", (li) => li.map((x) => x.dataset.id));
    if (!drawn.every((id) => clusterOf[id] === clusterOf[qid])) throw new Error("a random song from another cluster");
    checks.cluster_random = drawn.length;
    await page.check("#same-cluster");
    await page.waitForFunction((ids) => {
      const li = [...document.querySelectorAll("#results li.result")].map((x) => x.dataset.id);
      return li.length > 0 && li.every((id) => ids.includes(id));
    }, m.points.filter((p) => p.cluster === clusterOf[qid]).map((p) => p.id), { timeout: 10000 });
    checks.same_cluster_results = await page.locator("#results li.result").count();
    await page.uncheck("#same-cluster");
    await unfiltered();
  }

  // Taste: like two results and dislike two; the profile has them, "for you" fills, and the taste
  // ranking changes the order and never shows a disliked song.
  if (stats.taste) {
    // The plain ranking, from the API; wait until the page shows it (an earlier toggle may still be rendering).
    const qid = await page.evaluate(() => current.id);
    const before = (await (await page.request.get(url + "api/similar?k=10&id=" + encodeURIComponent(qid))).json()).results.map((r) => r.id);
    await page.waitForFunction((b) => [...document.querySelectorAll("#results li.result")].map((x) => x.dataset.id).join() === b.join(), before, { timeout: 10000 });
    const click = async (i, m) => {
      const n = await (await page.request.get(url + "api/taste")).json();
      await page.locator(`#results li.result >> nth=${i} >> button.mark.${m}`).click();
      await page.waitForFunction((c) => Number(document.getElementById("for-you").dataset.count || 0) >= 0 &&
        document.getElementById("taste-info").textContent.includes((c + 1) + " "), n.likes + n.dislikes, { timeout: 10000 }).catch(() => {});
    };
    await click(0, "like"); await click(1, "like"); await click(2, "dislike"); await click(3, "dislike");
    await page.waitForFunction(() => document.querySelectorAll("#results button.mark.on").length === 4, null, { timeout: 10000 });
    const t = await (await page.request.get(url + "api/taste")).json();
    checks.taste_marks = [t.likes, t.dislikes];
    if (t.likes !== 2 || t.dislikes !== 2) throw new Error(`profile has ${t.likes} likes, ${t.dislikes} dislikes`);
    checks.for_you = await page.locator("#for-you li").count();
    if (checks.for_you === 0) throw new Error("no 'for you' songs after marking");
    await page.check("#taste-rank");
    await page.waitForFunction((b) => {
      const now = [...document.querySelectorAll("#results li.result")].map((x) => x.dataset.id);
      return now.length > 0 && now.join() !== b.join() && !now.includes(b[2]) && !now.includes(b[3]);
    }, before, { timeout: 10000 });
    checks.taste_reranked = await page.$$eval("#results li.result", (li) => li.map((x) => x.dataset.id));
    await page.uncheck("#taste-rank");
    await page.waitForFunction((b) => [...document.querySelectorAll("#results li.result")].map((x) => x.dataset.id).join() === b.join(), before, { timeout: 10000 });
  }

  // Play the first match: the audio element must really advance.
  await page.locator("#results li.result button.play").first().click();
  await page.waitForFunction(() => document.getElementById("player").currentTime > 0, null, { timeout: 20000 });
  checks.played_seconds = await page.evaluate(() => document.getElementById("player").currentTime);
  checks.played = await page.evaluate(() => decodeURIComponent(document.getElementById("player").src.split("id=")[1]));

  // Target genre: every result carries it.
  const genre = stats.genres.find((g) => g.songs >= 3).name;
  await page.selectOption("#genre", genre);
  await page.waitForFunction((g) => {
    const li = [...document.querySelectorAll("#results li.result")];
    return li.length > 0 && li.every((x) => x.textContent.includes(g)) && document.getElementById("query-title").textContent.startsWith(g);
  }, genre, { timeout: 10000 });
  checks.genre = genre;
  checks.genre_results = await page.locator("#results li.result").count();
  await page.selectOption("#genre", "");

  // Upload a file (the drag-and-drop zone's file input): its own library copy comes first.
  if (audioFile && stats.upload) {
    await page.setInputFiles("#file", audioFile);
    await page.waitForFunction(() => document.getElementById("query-title").textContent.includes(".mp3"), null, { timeout: 30000 });
    await page.waitForSelector("#results li.result", { timeout: 10000 });
    checks.upload_top = await page.locator("#results li.result").first().getAttribute("data-id");
  }

  // Clicking a point of the map plays it and shows its neighbours.
  // The point clicked is one that is not playing already and lies farthest from any other (so the click
  // cannot land on a neighbour, whatever layout the model's vectors give the map).
  const before = await page.evaluate(() => document.getElementById("player").src);
  await page.locator("#map").scrollIntoViewIfNeeded();
  const pt = await page.evaluate(async () => {
    const m = await (await fetch("/api/map")).json();
    const playing = decodeURIComponent(document.getElementById("player").src.split("id=")[1] || "");
    const cv = document.getElementById("map");
    const r = cv.getBoundingClientRect();
    const at = (p) => ({ x: 14 + ((p.x + 1) / 2) * (cv.width - 28), y: 14 + ((1 - p.y) / 2) * (cv.height - 28) });
    let p = null, room = -1;
    for (const q of m.points) {
      if (q.id === playing) continue;
      const a = at(q);
      // Only where the canvas itself takes the click (not under the legend or off the screen).
      if (document.elementFromPoint(r.left + (a.x / cv.width) * r.width, r.top + (a.y / cv.height) * r.height) !== cv) continue;
      const d = Math.min(...m.points.filter((o) => o !== q).map((o) => { const b = at(o); return Math.hypot(a.x - b.x, a.y - b.y); }));
      if (d > room) { room = d; p = q; }
    }
    const c = at(p);
    return { id: p.id, x: r.left + (c.x / cv.width) * r.width, y: r.top + (c.y / cv.height) * r.height };
  });
  await page.mouse.click(pt.x, pt.y);
  await page.waitForFunction((b) => document.getElementById("player").src !== b, before, { timeout: 10000 });
  checks.map_click_played = await page.evaluate(() => decodeURIComponent(document.getElementById("player").src.split("id=")[1]));
  if (checks.map_click_played !== pt.id) throw new Error(`clicked ${pt.id} on the map, ${checks.map_click_played} played`);

  if (shot) await page.screenshot({ path: shot, fullPage: true });
  if (errors.length) throw new Error("page errors: " + errors.join("; "));
  if (outside.length) throw new Error("requests outside the server: " + outside.join(", "));
} catch (e) {
  // What the page showed, to tell a slow answer from a wrong one.
  const seen = page ? await page.evaluate(() => ({ status: document.getElementById("status").textContent,
    results: [...document.querySelectorAll("#results li.result")].map((x) => x.dataset.id) })).catch(() => null) : null;
  failed = e.message + (seen ? " | page: " + JSON.stringify(seen) : "");
} finally {
  await browser.close();
}
console.log(JSON.stringify({ ok: !failed, error: failed, ...checks }));
process.exit(failed ? 1 : 0);
