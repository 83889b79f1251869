// The studio's script, served at /assets/studio.js (the page's CSP allows no
// inline script). The page loads hls.js and the editor (/assets/editor.js,
// which defines ManimdEditor) before it, both installed by the setup; when
// the editor is missing, the page's plain text area stands in. The files
// panel (/assets/files.js, ManimdFiles) holds the project the editor edits.
"use strict";
const $ = (id) => document.getElementById(id);
const player = $("player");
let hls = null, events = null;

// The API key, for a server started with keys: kept in this tab's session
// storage and sent as the bearer token with every request the page makes.
const KEY_STORE = "manimd-api-key", keyField = $("api-key");
keyField.value = sessionStorage.getItem(KEY_STORE) || "";
const apiKey = () => keyField.value.trim();
function withKey(headers = {}) {
  const key = apiKey();
  return key ? { ...headers, authorization: `Bearer ${key}` } : headers;
}
const api = (path, init = {}) => fetch(path, { ...init, headers: withKey(init.headers) });
keyField.addEventListener("change", () => {
  if (apiKey()) sessionStorage.setItem(KEY_STORE, apiKey()); else sessionStorage.removeItem(KEY_STORE);
  start();
});
// A file shown by an element (the video, a still, the subtitles): with a
// key it is fetched with the key and shown from a blob URL, since an element
// cannot send the header. `held` keeps each slot's blob URL to let it go.
const held = { video: [], subtitles: [], frames: [] };
async function mediaUrl(url, slot) {
  if (!apiKey()) return url;
  const r = await api(url);
  if (!r.ok) throw new Error(`${r.status}`);
  const blob = URL.createObjectURL(await r.blob());
  held[slot].push(blob);
  return blob;
}
function release(slot) { for (const u of held[slot]) URL.revokeObjectURL(u); held[slot] = []; }
const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));

// The editor: CodeMirror (web/editor/, bundled by the setup), or the plain
// text area it replaces when the bundle is not installed.
const defaultCode = $("code").value;
let files = null;
const editor = makeEditor();
function makeEditor() {
  const area = $("code");
  const options = { doc: area.value, label: "Code", onRun: () => $("render").click(), onEdit: schedulePreview, onChange: () => { if (files) files.edited(); }, engine: () => $("engine").value };
  if (window.ManimdEditor) {
    const ed = ManimdEditor.createEditor(area.parentElement, options);
    area.remove();
    return ed;
  }
  area.addEventListener("input", () => { files.edited(); schedulePreview(); });
  const lineStart = (n) => area.value.split("\n").slice(0, n - 1).reduce((at, l) => at + l.length + 1, 0);
  // One file at a time, without a history of its own.
  let shown = null;
  return {
    plain: true,
    open(name, text) { if (name !== shown) { area.value = text; shown = name; } },
    current: () => shown,
    rename(from, to) { if (shown === from) shown = to; },
    forget(name) { if (shown === name) shown = null; },
    getCode: () => area.value,
    setCode: (text) => { area.value = text; },
    appendCode: (text) => { area.value += text; },
    focus: () => area.focus(),
    setNames() {},
    markError() {},
    showLine(n, focus) {
      const lines = area.value.split("\n");
      if (!(n >= 1 && n <= lines.length)) return;
      if (focus) area.focus({ preventScroll: true });
      area.setSelectionRange(lineStart(n), lineStart(n) + lines[n - 1].length);
    },
  };
}
// The project: the files beside the scene, the main file, kept across reloads.
files = ManimdFiles.createPanel({ editor, api, defaultCode, onChange: schedulePreview });
// Ctrl+Enter (Cmd+Enter on a Mac) renders from anywhere on the page (the
// editor handles it itself); in the prompt box it generates.
document.addEventListener("keydown", (e) => {
  if (e.key !== "Enter" || !(e.ctrlKey || e.metaKey) || e.defaultPrevented) return;
  e.preventDefault();
  $(e.target === $("prompt-text") ? "generate" : "render").click();
});
// Shows the author's line n in the editor. The editor takes the focus only
// with a mouse, so a phone's keyboard does not pop up over the page.
// The timeline's and storyboard's lines are the main file's.
function showLine(n) { files.showMain(); editor.showLine(n, matchMedia("(pointer: fine)").matches); }

function status(text) { $("status").textContent = text; }
function progress(fraction) { $("progress").firstElementChild.style.width = `${Math.round(fraction * 100)}%`; }
function showError(err) {
  const box = $("error");
  if (!err) { box.style.display = "none"; editor.markError(null); return; }
  let text = `${err.code}: ${err.message}`;
  if (err.traceback && err.traceback.length) text += "\n" + err.traceback.map((f) => `  line ${f.line} in ${f.function}: ${f.code}`).join("\n");
  if (err.tex_error) text += `\nTeX: ${err.tex_error}`;
  box.textContent = text; box.style.display = "block";
  // In the editor: the line marked, with the message's first line beside
  // it, in the file it names (a helper module), or else the main file.
  if (err.line) {
    if (err.file && files.isText(err.file)) files.show(err.file);
    else if (!err.file) files.showMain();
  }
  editor.markError(err.line || null, (err.message || err.code).split("\n")[0]);
}

function playLive(url) {
  if (hls) { hls.destroy(); hls = null; }
  if (window.Hls && Hls.isSupported()) {
    // The key, if any, on each playlist and segment request.
    const xhrSetup = (xhr) => { if (apiKey()) xhr.setRequestHeader("authorization", `Bearer ${apiKey()}`); };
    hls = new Hls({ liveDurationInfinity: false, startPosition: 0, xhrSetup });
    hls.loadSource(url); hls.attachMedia(player);
    hls.on(Hls.Events.MANIFEST_PARSED, () => player.play().catch(() => {}));
  } else if (player.canPlayType("application/vnd.apple.mpegurl")) {
    player.src = url; player.play().catch(() => {});   // Safari plays HLS natively
  }
}
async function playFinal(job) {
  if (hls) { hls.destroy(); hls = null; }
  showTimeline(job.result);
  for (const t of player.querySelectorAll("track")) t.remove();
  release("subtitles");
  try {
    // The blob URLs of the video shown before, let go once this one is in.
    const before = held.video.slice();
    const video = await mediaUrl(job.links.video, "video");
    if (job.result && job.result.still) { player.poster = video; player.removeAttribute("src"); }
    else {
      // A narrated render's lines as subtitles, shown by default.
      if (job.links.subtitles) {
        const track = document.createElement("track");
        Object.assign(track, { kind: "subtitles", srclang: "en", label: "Narration", src: await mediaUrl(job.links.subtitles, "subtitles"), default: true });
        player.appendChild(track);
      }
      player.src = video; player.play().catch(() => {});
    }
    for (const u of before) URL.revokeObjectURL(u);
    held.video = held.video.filter((u) => !before.includes(u));
  } catch (e) { status(`the video could not be fetched (${e.message})`); }
}

async function waitForSegment(job) {
  // The playlist exists once the first animation is finished. With a key,
  // polls count against its request rate: once a second then.
  const every = apiKey() ? 1000 : 250;
  for (let i = 0; i < 150000 / every && events; i++) {
    const r = await api(job.links.live, { cache: "no-store" });
    if (r.ok && (await r.text()).includes("#EXTINF")) { playLive(job.links.live); return; }
    await sleep(every);
  }
}

// Reads an event stream with fetch (an EventSource cannot send the key):
// calls on[event](data) for each event and follows again if the stream ends
// early (a restarted server), until closed. Returns { close }.
function stream(url, on) {
  const abort = new AbortController();
  (async () => {
    for (let tries = 0; tries < 30 && !abort.signal.aborted; tries++) {
      try {
        const r = await api(url, { headers: { accept: "text/event-stream" }, signal: abort.signal });
        if (!r.ok) { const body = await r.json().catch(() => null); if (on.refused) on.refused(r.status, body); return; }
        const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let end;
          while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, "");
            dispatch(block, on);
          }
        }
      } catch { if (abort.signal.aborted) return; }
      await sleep(1000);
    }
  })();
  return { close: () => abort.abort() };
}
// One event's lines: `event:` names it, `data:` lines are its data.
function dispatch(block, on) {
  let name = "message";
  const data = [];
  for (const line of block.split(/\r?\n/)) {
    const colon = line.indexOf(":");
    if (colon === 0) continue;   // a comment (keep-alive)
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") name = value;
    else if (field === "data") data.push(value);
  }
  if (data.length && on[name]) on[name](JSON.parse(data.join("\n")));
}

function follow(job) {
  if (events) events.close();
  // A generation has no live stream (a failed attempt's pieces do not belong in it).
  let live = job.kind === "generation";
  const stop = () => { if (events) { events.close(); events = null; } };
  events = stream(job.links.events, {
    // A generation's stages, its code as the model writes it, each attempt's error.
    stage(s) {
      status(s.attempt ? `attempt ${s.attempt}: ${s.stage}…` : `${s.stage}…`);
      if (s.stage === "writing" || s.stage === "repairing") editor.setCode("");
    },
    delta(d) { editor.appendCode(d.text); },
    // Each attempt's code as checked (fences and prose removed), its error line marked.
    attempt(a) { editor.setCode(a.code); showError(a.error || null); },
    progress(p) {
      if (p.event === "animation") status(`${p.scene}: animation ${p.index} ${p.name}${p.line ? ` (line ${p.line})` : ""}${p.cached ? ", reused" : ""}`);
      if (p.event === "frames") status(`${p.scene}: ${p.frames} frames`);
      if (p.event === "awaiting-pieces") status(`waiting for ${p.count} animations other workers draw`);
      if (p.event === "partial-movie") {
        progress(Math.min(0.95, (p.index + 1) / 12));
        if (!live) { live = true; waitForSegment(job); }
      }
    },
    status(j) {
      if (j.status === "running" && !live) status("rendering…");
      if (["succeeded", "failed", "canceled"].includes(j.status)) {
        stop(); progress(1);
        if (j.status === "succeeded") { status(`done in ${j.timings.render_secs.toFixed(2)} s${j.result.cache_hit ? " (from the cache)" : ""}`); playFinal(j); }
        else { status(j.status); showError(j.error); }
        listJobs();
      }
    },
    refused(code, body) { stop(); status(`refused (${code})`); showError(body && body.error); },
  });
}

async function submit(path, body) {
  showError(null); showTimeline(null); progress(0); status("submitting…");
  const r = await api(path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  const data = await r.json().catch(() => ({}));
  if (!r.ok) { status(`refused (${r.status})`); showError(data.error); return; }
  status(data.status === "succeeded" ? "from the cache" : "queued");
  if (data.status === "succeeded") { progress(1); playFinal(data); listJobs(); return; }
  follow(data);
}

// The project's files as the request sends them (a project of one file as
// `code`), once the server has every blob; null, with the error shown, when
// an upload was refused.
async function projectBody() {
  try { return await files.request(status); } catch (err) {
    status("refused");
    showError(err.code ? err : { code: "upload-failed", message: String(err.message || err) });
    return null;
  }
}
$("render").addEventListener("click", async () => {
  showError(null);
  const project = await projectBody();
  if (!project) return;
  const body = { ...project, quality: $("quality").value, format: $("format").value };
  if ($("engine").value) body.engine = $("engine").value;
  if ($("narration").checked) body.narration = true;
  submit("/v1/renders", body);
});
// A generation writes a single scene: into the main file.
$("generate").addEventListener("click", () => { files.showMain(); submit("/v1/generations", { prompt: $("prompt-text").value, engine: $("engine").value || undefined, quality: $("quality").value, narration: $("narration").checked || undefined }); });

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
  storyboardNote("updating…");
  let project;
  try { project = await files.request(); } catch (err) {
    if (abort === previewAbort) storyboardNote(`(not updated: ${err.code || err.message})`);
    return;
  }
  if (abort !== previewAbort) return;
  // Low quality: the stills are thumbnails.
  const body = { ...project, quality: "low", kind: "storyboard" };
  if ($("engine").value) body.engine = $("engine").value;
  let r, data;
  try {
    r = await api("/v1/previews", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body), signal: abort.signal });
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
  strip.replaceChildren(); strip.classList.remove("stale"); release("frames");
  const all = data.animations || [];
  for (const f of data.frames || []) {
    const a = all.find((x) => x.index === f.animation);
    const frame = document.createElement("button"), img = document.createElement("img"), name = document.createElement("span");
    frame.type = "button"; frame.className = "frame";
    frame.title = a ? `${a.index + 1}. ${a.name}${a.line ? ` · line ${a.line}` : ""}` : `${f.time.toFixed(2)} s`;
    img.alt = a ? a.name : ""; img.decoding = "async";
    mediaUrl(f.url, "frames").then((u) => { img.src = u; }).catch(() => {});
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
  const r = await api("/v1/renders?limit=10");
  if (r.status === 401) { status("This server needs an API key: enter it above."); return; }
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
      // With a key, the file is fetched with it and saved from a blob URL.
      a.addEventListener("click", async (e) => {
        if (!apiKey()) return;
        e.preventDefault();
        const r = await api(j.links.video);
        if (!r.ok) { status(`download refused (${r.status})`); return; }
        const save = document.createElement("a");
        save.href = URL.createObjectURL(await r.blob()); save.download = `${j.id}.${j.format || "mp4"}`;
        save.click();
        setTimeout(() => URL.revokeObjectURL(save.href), 60000);
      });
      li.appendChild(a);
    }
    $("jobs").appendChild(li);
  }
}

// What needs the server: the prompt box (when it has a model) and the
// recent renders, asked again when the key changes. The completion names
// come with the setup's files (no key needed).
function start() {
  api("/v1/capabilities").then((r) => (r.ok ? r.json() : {})).then((c) => { $("prompt").style.display = c.generation ? "flex" : "none"; }).catch(() => {});
  listJobs();
}
fetch("/assets/engine-names.json").then((r) => (r.ok ? r.json() : null)).then((names) => editor.setNames(names)).catch(() => {});
if (editor.plain) status("The editor is not installed (run scripts/setup.sh): a plain text area stands in.");
start();
