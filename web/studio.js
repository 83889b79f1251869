// The studio's script, served at /assets/studio.js (the page's CSP allows no
// inline script). It needs hls.js, loaded before it.
"use strict";
const $ = (id) => document.getElementById(id);
const code = $("code"), highlight = $("highlight"), player = $("player");
let errorLine = null, hls = null, events = null;

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
    `<span class="ln${i + 1 === errorLine ? " error" : ""}" data-line="${i + 1}">${highlightLine(l) || " "}</span>`).join("");
  highlight.scrollTop = code.scrollTop; highlight.scrollLeft = code.scrollLeft;
}
code.addEventListener("input", () => { errorLine = null; render(); });
code.addEventListener("scroll", () => { highlight.scrollTop = code.scrollTop; highlight.scrollLeft = code.scrollLeft; });
code.addEventListener("keydown", (e) => {
  if (e.key === "Tab") { e.preventDefault(); const s = code.selectionStart; code.setRangeText("    ", s, code.selectionEnd, "end"); render(); }
});

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
  if (errorLine) {
    const row = highlight.querySelector(`[data-line="${errorLine}"]`);
    if (row) code.scrollTop = Math.max(0, row.offsetTop - 60);
  }
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
    if (p.event === "animation") status(`${p.scene}: animation ${p.index} ${p.name}`);
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
  showError(null); progress(0); status("submitting…");
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
