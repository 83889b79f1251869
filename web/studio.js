// The studio's script, served at /assets/studio.js (the page's CSP allows no
// inline script). It needs hls.js, loaded before it.
"use strict";
const $ = (id) => document.getElementById(id);
const code = $("code"), highlight = $("highlight"), player = $("player");
// errorLine: the failing line; pickedLine: the line of the animation picked on
// the timeline or the storyboard. Both are shown in the highlighter.
let errorLine = null, pickedLine = null, hls = null, events = null;

// Python highlighting, enough to read a scene: keywords, strings, comments, numbers, calls.
const KEYWORDS = new Set("False None True and as assert async await break class continue def del elif else except finally for from global if import in is lambda nonlocal not or pass raise return try while with yield self".split(" "));
function escape(s) { return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;"); }
function highlightLine(line) {
  const token = /(#.*$)|("(?:[^"\\]|\\.)*"?|'(?:[^'\\]|\\.)*'?)|(\b\d+(?:\.\d+)?\b)|([A-Za-z_]\w*)(\s*\()?|([^#"'\w]+)/g;
  let out = "", m;
  while ((m = token.exec(line)) !== null) {
    if (m[1]) out += `<span class="com">${escape(m[1])}</span>`;
    else if (m[2]) out += `<span class="str">${escape(m[2])}</span>`;
    else if (m[3]) out += `<span class="num">${m[3]}</span>`;
    else if (m[4]) out += KEYWORDS.has(m[4]) ? `<span class="kw">${m[4]}</span>${m[5] || ""}` : m[5] ? `<span class="fn">${m[4]}</span>${m[5]}` : m[4];
    else out += escape(m[6] || m[0]);
  }
  return out;
}
function render() {
  highlight.innerHTML = code.value.split("\n").map((l, i) =>
    `<span class="ln${i + 1 === errorLine ? " error" : ""}${i + 1 === pickedLine ? " picked" : ""}" data-line="${i + 1}">${highlightLine(l) || " "}</span>`).join("");
  highlight.scrollTop = code.scrollTop; highlight.scrollLeft = code.scrollLeft;
}
code.addEventListener("input", () => { errorLine = null; pickedLine = null; render(); schedulePreview(); });
code.addEventListener("scroll", () => { highlight.scrollTop = code.scrollTop; highlight.scrollLeft = code.scrollLeft; });
code.addEventListener("keydown", (e) => {
  if (e.key === "Tab") { e.preventDefault(); const s = code.selectionStart; code.setRangeText("    ", s, code.selectionEnd, "end"); render(); }
});
// Ctrl+Enter (Cmd+Enter on a Mac) renders from anywhere on the page; in the
// prompt box it generates.
document.addEventListener("keydown", (e) => {
  if (e.key !== "Enter" || !(e.ctrlKey || e.metaKey)) return;
  e.preventDefault();
  $(e.target === $("prompt-text") ? "generate" : "render").click();
});
// Scrolls the editor so that line n (from 1) shows near its top.
function scrollToLine(n) {
  const row = highlight.querySelector(`[data-line="${n}"]`);
  if (row) code.scrollTop = Math.max(0, row.offsetTop - 60);
}
// Shows the author's line n: marked in the highlighter, selected in the
// editor and scrolled to. The editor takes the focus only with a mouse, so a
// phone's keyboard does not pop up over the page.
function showLine(n) {
  const lines = code.value.split("\n");
  pickedLine = n && n <= lines.length ? n : null; render();
  if (!pickedLine) return;
  const start = lines.slice(0, n - 1).reduce((at, l) => at + l.length + 1, 0);
  if (matchMedia("(pointer: fine)").matches) code.focus({ preventScroll: true });
  code.setSelectionRange(start, start + lines[n - 1].length);
  scrollToLine(n);
}

function status(text) { $("status").textContent = text; }
function progress(fraction) { $("progress").firstElementChild.style.width = `${Math.round(fraction * 100)}%`; }
function showError(err) {
  const box = $("error");
  if (!err) { box.style.display = "none"; errorLine = null; render(); return; }
  let text = `${err.code}: ${err.message}`;
  if (err.traceback && err.traceback.length) text += "\n" + err.traceback.map((f) => `  line ${f.line} in ${f.function}: ${f.code}`).join("\n");
  if (err.tex_error) text += `\nTeX: ${err.tex_error}`;
  box.textContent = text; box.style.display = "block";
  errorLine = err.line || null; render();
  if (errorLine) scrollToLine(errorLine);
}

function playLive(url) {
  if (hls) { hls.destroy(); hls = null; }
  if (window.Hls && Hls.isSupported()) {
    hls = new Hls({ liveDurationInfinity: false, startPosition: 0 });
    hls.loadSource(url); hls.attachMedia(player);
    hls.on(Hls.Events.MANIFEST_PARSED, () => player.play().catch(() => {}));
  } else if (player.canPlayType("application/vnd.apple.mpegurl")) {
    player.src = url; player.play().catch(() => {});   // Safari plays HLS natively
  }
}
function playFinal(job) {
  if (hls) { hls.destroy(); hls = null; }
  showTimeline(job.result);
  for (const t of player.querySelectorAll("track")) t.remove();
  if (job.result && job.result.still) { player.poster = job.links.video; player.removeAttribute("src"); return; }
  // A narrated render's lines as subtitles, shown by default.
  if (job.links.subtitles) {
    const track = document.createElement("track");
    Object.assign(track, { kind: "subtitles", srclang: "en", label: "Narration", src: job.links.subtitles, default: true });
    player.appendChild(track);
  }
  player.src = job.links.video; player.play().catch(() => {});
}

async function waitForSegment(job) {
  // The playlist exists once the first animation is finished.
  for (let i = 0; i < 600 && events; i++) {
    const r = await fetch(job.links.live, { cache: "no-store" });
    if (r.ok && (await r.text()).includes("#EXTINF")) { playLive(job.links.live); return; }
    await new Promise((ok) => setTimeout(ok, 250));
  }
}

function follow(job) {
  if (events) events.close();
  events = new EventSource(job.links.events);
  // A generation has no live stream (a failed attempt's pieces do not belong in it).
  let live = job.kind === "generation";
  // A generation's stages, its code as the model writes it, each attempt's error.
  events.addEventListener("stage", (e) => {
    const s = JSON.parse(e.data);
    status(s.attempt ? `attempt ${s.attempt}: ${s.stage}…` : `${s.stage}…`);
    if (s.stage === "writing" || s.stage === "repairing") { code.value = ""; render(); }
  });
  events.addEventListener("delta", (e) => { code.value += JSON.parse(e.data).text; render(); });
  // Each attempt's code as checked (fences and prose removed), its error line highlighted.
  events.addEventListener("attempt", (e) => { const a = JSON.parse(e.data); code.value = a.code; showError(a.error || null); });
  events.addEventListener("progress", (e) => {
    const p = JSON.parse(e.data);
    if (p.event === "animation") status(`${p.scene}: animation ${p.index} ${p.name}${p.line ? ` (line ${p.line})` : ""}${p.cached ? ", reused" : ""}`);
    if (p.event === "frames") status(`${p.scene}: ${p.frames} frames`);
    if (p.event === "partial-movie") {
      progress(Math.min(0.95, (p.index + 1) / 12));
      if (!live) { live = true; waitForSegment(job); }
    }
  });
  events.addEventListener("status", (e) => {
    const j = JSON.parse(e.data);
    if (j.status === "running" && !live) status("rendering…");
    if (["succeeded", "failed", "canceled"].includes(j.status)) {
      events.close(); events = null; progress(1);
      if (j.status === "succeeded") { status(`done in ${j.timings.render_secs.toFixed(2)} s${j.result.cache_hit ? " (from the cache)" : ""}`); playFinal(j); }
      else { status(j.status); showError(j.error); }
      listJobs();
    }
  });
}

async function submit(path, body) {
  showError(null); showTimeline(null); progress(0); status("submitting…");
  const r = await fetch(path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  const data = await r.json();
  if (!r.ok) { status(`refused (${r.status})`); showError(data.error); return; }
  status(data.status === "succeeded" ? "from the cache" : "queued");
  if (data.status === "succeeded") { progress(1); playFinal(data); listJobs(); return; }
  follow(data);
}

$("render").addEventListener("click", () => {
  const body = { code: code.value, quality: $("quality").value, format: $("format").value };
  if ($("engine").value) body.engine = $("engine").value;
  if ($("narration").checked) body.narration = true;
  submit("/v1/renders", body);
});
$("generate").addEventListener("click", () => submit("/v1/generations", { prompt: $("prompt-text").value, engine: $("engine").value || undefined, quality: $("quality").value, narration: $("narration").checked || undefined }));

// The timeline under the player: one mark per animation of the render shown,
// placed by its times over the video's length. Clicking one seeks the player
// to its start and shows its line in the editor.
let animations = [];
const marks = $("marks");
function describe(a) {
  const scene = new Set(animations.map((x) => x.scene)).size > 1 ? `${a.scene}: ` : "";
  return `${a.index + 1}. ${scene}${a.name}${a.line ? ` · line ${a.line}` : ""} · ${a.start.toFixed(2)}–${a.end.toFixed(2)} s`;
}
function showTimeline(result) {
  animations = (result && result.animations) || [];
  for (const m of marks.querySelectorAll(".mark")) m.remove();
  $("timeline").hidden = !animations.length;
  if (!animations.length) return;
  // What the last edit changed: the animations drawn anew when the render
  // reused others from the cache. When none was reused (a first render) or
  // all were, no mark stands out. A render taken whole from the cache
  // repeats an earlier job's flags, which say nothing about this edit.
  const fresh = animations.filter((a) => !a.cached);
  const marking = !result.cache_hit && fresh.length > 0 && fresh.length < animations.length;
  for (const a of animations) {
    const changed = marking && !a.cached;
    const mark = document.createElement("button"), name = document.createElement("span");
    mark.type = "button"; mark.className = changed ? "mark changed" : "mark";
    mark.title = describe(a) + (changed ? " · changed by the edit" : a.cached ? " · reused" : "");
    name.textContent = a.name; mark.appendChild(name);
    mark.addEventListener("click", () => pick(a));
    marks.appendChild(mark);
  }
  const legend = $("legend");
  legend.replaceChildren();
  if (marking) {
    const key = document.createElement("span");
    key.className = "key changed"; legend.appendChild(key);
    legend.append(`changed by the edit: ${fresh.length} of ${animations.length}; the others were reused from the cache`);
  } else if (result.cache_hit) legend.append(`${animations.length} animations, the whole video from the cache`);
  else if (fresh.length) legend.append(`${animations.length} animations, all drawn (nothing reused from the cache)`);
  else legend.append(`${animations.length} animations, all reused from the cache`);
  layout();
}
// The video's length: the player's once known, else where the last animation ends.
function videoLength() {
  const end = Math.max(...animations.map((a) => a.end));
  return Number.isFinite(player.duration) && player.duration > end ? player.duration : end;
}
function layout() {
  const total = videoLength();
  if (!(total > 0)) return;
  marks.querySelectorAll(".mark").forEach((m, i) => {
    const a = animations[i];
    m.style.left = `${(100 * a.start) / total}%`;
    m.style.width = `${(100 * Math.max(0, a.end - a.start)) / total}%`;
  });
  followPlayhead();
}
// The playhead, and the mark of the animation playing now.
function followPlayhead() {
  const total = videoLength();
  if (!(total > 0)) return;
  const t = player.currentTime, last = animations.length - 1;
  $("playhead").style.left = `${Math.min(100, (100 * t) / total)}%`;
  marks.querySelectorAll(".mark").forEach((m, i) => {
    const a = animations[i];
    m.classList.toggle("now", t >= a.start && (t < a.end || (i === last && t <= total)));
  });
}
function pick(a) {
  if (player.currentSrc) player.currentTime = a.start;
  showLine(a.line);
}
player.addEventListener("loadedmetadata", layout);
player.addEventListener("timeupdate", followPlayhead);
player.addEventListener("seeked", followPlayhead);

// The storyboard: on a pause in typing, one still per animation of the code
// as it stands, each showing its line when clicked. It needs the server's
// previews; a server without them (404) hides it for good.
let previewTimer = null, previewAbort = null, previewsAbsent = false, previewError = false;
function schedulePreview() {
  if (previewsAbsent) return;
  clearTimeout(previewTimer);
  if (previewAbort) { previewAbort.abort(); previewAbort = null; }
  previewTimer = setTimeout(preview, 800);
}
function storyboardNote(text) { $("storyboard-note").textContent = text; }
async function preview() {
  const abort = previewAbort = new AbortController();
  // Low quality: the stills are thumbnails.
  const body = { code: code.value, quality: "low", kind: "storyboard" };
  if ($("engine").value) body.engine = $("engine").value;
  storyboardNote("updating…");
  let r, data;
  try {
    r = await fetch("/v1/previews", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body), signal: abort.signal });
    data = await r.json().catch(() => null);
  } catch { return; }   // replaced by a newer edit, or the server is gone
  if (abort !== previewAbort) return;
  previewAbort = null;
  if (r.status === 404) { previewsAbsent = true; $("storyboard").hidden = true; return; }
  if (r.status === 422 && data && data.error) {
    // The scene fails as it stands: the typed error and its line, as for a render.
    showError(data.error); previewError = true;
    storyboardNote("(the scene fails: see the error)");
    $("frames").classList.add("stale");
    return;
  }
  if (!r.ok || !data) { storyboardNote(`(not updated: ${(data && data.error && data.error.code) || r.status})`); return; }
  if (previewError) { showError(null); previewError = false; }
  showStoryboard(data);
}
function showStoryboard(data) {
  const strip = $("frames");
  strip.replaceChildren(); strip.classList.remove("stale");
  const all = data.animations || [];
  for (const f of data.frames || []) {
    const a = all.find((x) => x.index === f.animation);
    const frame = document.createElement("button"), img = document.createElement("img"), name = document.createElement("span");
    frame.type = "button"; frame.className = "frame";
    frame.title = a ? `${a.index + 1}. ${a.name}${a.line ? ` · line ${a.line}` : ""}` : `${f.time.toFixed(2)} s`;
    img.src = f.url; img.alt = a ? a.name : ""; img.decoding = "async";
    name.textContent = a ? a.name : `${f.time.toFixed(2)} s`;
    frame.append(img, name);
    frame.addEventListener("click", () => {
      for (const other of strip.children) other.classList.toggle("picked", other === frame);
      if (a) showLine(a.line);
    });
    strip.appendChild(frame);
  }
  storyboardNote(`${(data.frames || []).length} stills`);
  $("storyboard").hidden = false;
}

async function listJobs() {
  const r = await fetch("/v1/renders?limit=10");
  if (!r.ok) return;
  const { renders } = await r.json();
  $("jobs").replaceChildren();
  for (const j of renders) {
    // Built from nodes, not markup: the values are text, never parsed.
    const li = document.createElement("li");
    const when = new Date(j.created_at).toLocaleTimeString();
    const line = document.createElement("span"), state = document.createElement("b");
    line.textContent = `${when} · ${j.engine} · ${j.quality} · `;
    state.textContent = j.status;
    line.appendChild(state); li.appendChild(line);
    if (j.status === "succeeded") {
      const a = document.createElement("a");
      a.href = j.links.video; a.textContent = "download"; a.setAttribute("download", "");
      li.appendChild(a);
    }
    $("jobs").appendChild(li);
  }
}

// The prompt box appears when the server has an LLM configured.
fetch("/v1/capabilities").then((r) => r.json()).then((c) => { if (c.generation) $("prompt").style.display = "flex"; }).catch(() => {});
render(); listJobs();
