// The studio's files panel, served at /assets/files.js before the studio's
// script, which it gives the global ManimdFiles. A project is the scene
// file and the files beside it (helper modules, images, sounds, fonts,
// data): the panel adds, uploads, renames and deletes them, shows images
// and sounds, opens text files in the editor (one document each, so each
// keeps its own undo history), chooses the main file, and builds the
// request's `code` (one file) or `files` + `main` (more), uploading the
// blobs the server lacks first.
//
// Kept in the browser across reloads, in two places on purpose:
// - the project's manifest (paths, main file, each text file's text and
//   each binary file's digest) in localStorage, as one JSON value: one
//   synchronous write, so a save is whole or not at all, and it can be made
//   on `pagehide`, when an asynchronous write may never finish. Text that a
//   request may carry inline is small (the server takes 1 MiB a request);
// - binary files' bytes in IndexedDB, by digest: it stores Blobs as they
//   are, where localStorage holds only strings (base64 would cost a third
//   more of a quota of a few MiB). The bytes, not just the digests: the
//   server collects a blob a day after its last use, and the studio must be
//   able to upload it again. The bytes are stored before the manifest names
//   them; bytes no manifest names are deleted when the page loads (only
//   then: another tab may have just stored bytes its manifest names).
"use strict";
window.ManimdFiles = (() => {
  const STORE = "manimd-project";
  const DB_NAME = "manimd-studio", BYTES = "blobs";
  // An upload is sent inline when it is text of at most this size (as the
  // CLI's `submit` does); other files are blobs, uploaded once.
  const INLINE_MAX = 64 * 1024;
  const IMAGE = /\.(png|jpe?g|gif|webp|bmp|svg)$/i, AUDIO = /\.(wav|mp3|ogg|oga|flac|m4a|aac)$/i;
  const BINARY = /\.(png|jpe?g|gif|webp|bmp|svg|ico|tiff?|wav|mp3|ogg|oga|flac|m4a|aac|mp4|webm|mov|ttf|otf|ttc|woff2?|npy|npz|pkl|zip|gz|pdf)$/i;
  const isPython = (path) => /\.py$/i.test(path);

  // --- The bytes of binary files, in IndexedDB -------------------------
  let db = null;
  function openDb() {
    if (!db) {
      db = new Promise((ok, fail) => {
        const req = indexedDB.open(DB_NAME, 1);
        req.onupgradeneeded = () => req.result.createObjectStore(BYTES);
        req.onsuccess = () => ok(req.result);
        req.onerror = () => fail(req.error);
      });
    }
    return db;
  }
  async function bytesStore(mode, use) {
    const tx = (await openDb()).transaction(BYTES, mode);
    const req = use(tx.objectStore(BYTES));
    return new Promise((ok, fail) => {
      tx.oncomplete = () => ok(req && req.result);
      tx.onerror = tx.onabort = () => fail(tx.error);
    });
  }
  const putBytes = (digest, blob) => bytesStore("readwrite", (s) => s.put(blob, digest));
  const getBytes = (digest) => bytesStore("readonly", (s) => s.get(digest));
  async function pruneBytes(keep) {
    const all = await bytesStore("readonly", (s) => s.getAllKeys());
    const gone = (all || []).filter((d) => !keep.has(d));
    if (gone.length) await bytesStore("readwrite", (s) => { for (const d of gone) s.delete(d); });
  }

  // --- Digests -----------------------------------------------------------
  // The server names a blob by its SHA-256. crypto.subtle exists only in a
  // secure context (https, or a server on localhost); a studio opened over
  // plain http from another machine hashes in script instead.
  async function sha256(blob) {
    const bytes = new Uint8Array(await blob.arrayBuffer());
    const digest = window.crypto && crypto.subtle ? new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)) : sha256Script(bytes);
    return "sha256:" + [...digest].map((b) => b.toString(16).padStart(2, "0")).join("");
  }
  // SHA-256 as FIPS 180-4 defines it, for the insecure context above.
  const K = new Uint32Array(64);
  (() => {
    // The round constants: the first 32 bits of the fractional parts of the
    // cube roots of the first 64 primes.
    let n = 0;
    for (let p = 2; n < 64; p++) {
      let prime = true;
      for (let d = 2; d * d <= p; d++) if (p % d === 0) { prime = false; break; }
      if (prime) K[n++] = ((Math.cbrt(p) % 1) * 2 ** 32) >>> 0;
    }
  })();
  function sha256Script(data) {
    const h = Uint32Array.of(0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19);
    const length = data.length, padded = new Uint8Array(Math.ceil((length + 9) / 64) * 64);
    padded.set(data); padded[length] = 0x80;
    const view = new DataView(padded.buffer);
    view.setUint32(padded.length - 8, Math.floor(length / 2 ** 29));
    view.setUint32(padded.length - 4, (length * 8) >>> 0);
    const w = new Uint32Array(64), rotr = (x, n) => (x >>> n) | (x << (32 - n));
    for (let at = 0; at < padded.length; at += 64) {
      for (let i = 0; i < 16; i++) w[i] = view.getUint32(at + i * 4);
      for (let i = 16; i < 64; i++) {
        const s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >>> 3);
        const s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >>> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
      }
      let [a, b, c, d, e, f, g, k] = h;
      for (let i = 0; i < 64; i++) {
        const t1 = k + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
        const t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        k = g; g = f; f = e; e = (d + t1) >>> 0; d = c; c = b; b = a; a = (t1 + t2) >>> 0;
      }
      [a, b, c, d, e, f, g, k].forEach((x, i) => { h[i] = (h[i] + x) >>> 0; });
    }
    const out = new Uint8Array(32);
    h.forEach((x, i) => new DataView(out.buffer).setUint32(i * 4, x));
    return out;
  }

  // --- Paths ---------------------------------------------------------------
  // The server's rules (README, Projects), checked here first so that a
  // name is refused as it is typed: relative, no `..`, no control character
  // or backslash; `a/./b` and `a//b` are `a/b`.
  function normalise(raw) {
    const path = raw.trim();
    if (!path) return { error: "a name is needed" };
    if (path.startsWith("/")) return { error: "the path must be relative" };
    if (/[\u0000-\u001f\u007f\\]/.test(path)) return { error: "no control characters or backslashes" };
    const parts = path.split("/").filter((p) => p && p !== ".");
    if (parts.includes("..")) return { error: "no .. in a path" };
    if (!parts.length || path.endsWith("/")) return { error: "a file name is needed" };
    return { path: parts.join("/") };
  }
  const sizeText = (n) => (n < 1024 ? `${n} B` : n < 1048576 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1048576).toFixed(1)} MiB`);
  const typeOf = (path) => {
    const ext = (path.match(/\.([^./]+)$/) || [])[1] || "";
    const known = { png: "image/png", jpg: "image/jpeg", jpeg: "image/jpeg", gif: "image/gif", webp: "image/webp", bmp: "image/bmp", svg: "image/svg+xml", wav: "audio/wav", mp3: "audio/mpeg", ogg: "audio/ogg", oga: "audio/ogg", flac: "audio/flac", m4a: "audio/mp4", aac: "audio/aac" };
    return known[ext.toLowerCase()] || "application/octet-stream";
  };
  // An upload's bytes as text, when it is text that can go inline. Python
  // files always do (a scene file must, and a module is edited), up to the
  // request's 1 MiB.
  async function inlineText(file) {
    if (BINARY.test(file.name) || file.size > (isPython(file.name) ? 1048576 : INLINE_MAX)) return null;
    try {
      const text = new TextDecoder("utf-8", { fatal: true }).decode(await file.arrayBuffer());
      return text.includes("\u0000") || text.startsWith("sha256:") ? null : text;
    } catch { return null; }
  }

  // --- The panel -------------------------------------------------------------
  // Options: editor (the studio's), api(path, init) (fetch with the key),
  // defaultCode (a new project's scene), onChange() (the project changed:
  // a file added, renamed, deleted, the main file chosen), note(text).
  function createPanel({ editor, api, defaultCode, onChange = () => {} }) {
    const $ = (id) => document.getElementById(id);
    const list = $("file-list"), form = $("file-form"), nameField = $("file-name"), preview = $("file-preview");
    // path -> { text } or { digest, size, type }; `main` is sent as the
    // scene file; `open` is shown in the editor or the preview.
    let files = new Map(), main = "scene.py", open = "scene.py";
    let previewUrl = null, formMode = null;

    const note = (text) => { $("file-note").textContent = text || ""; };
    function load() {
      try {
        const saved = JSON.parse(localStorage.getItem(STORE) || "null");
        if (saved && saved.version === 1 && Array.isArray(saved.files) && saved.files.length) {
          files = new Map(saved.files.map((f) => [f.path, f.digest ? { digest: f.digest, size: f.size, type: f.type } : { text: f.text || "" }]));
          main = files.has(saved.main) ? saved.main : [...files.keys()].find(isPython);
          open = files.has(saved.open) ? saved.open : main;
          return true;
        }
      } catch { /* a damaged manifest: start again */ }
      files = new Map([["scene.py", { text: defaultCode }]]);
      main = open = "scene.py";
      return false;
    }
    function save() {
      const manifest = { version: 1, main, open, files: [...files].map(([path, f]) => ({ path, ...f })) };
      try { localStorage.setItem(STORE, JSON.stringify(manifest)); }
      catch { note("This browser's storage is full: the project is not kept across reloads."); }
    }
    let saveTimer = null;
    const saveSoon = () => { clearTimeout(saveTimer); saveTimer = setTimeout(save, 300); };
    addEventListener("pagehide", () => { clearTimeout(saveTimer); save(); });
    const changed = () => { save(); draw(); onChange(); };

    // The list: per file, the main-file radio (Python files), its name (a
    // button that opens it), and rename and delete buttons.
    function draw() {
      // The control that had the focus gets it back in the new list.
      const active = list.contains(document.activeElement) ? document.activeElement : null;
      const had = active && { path: active.closest("li").dataset.path, at: [...active.parentElement.children].indexOf(active) };
      list.replaceChildren();
      for (const path of [...files.keys()].sort()) {
        const f = files.get(path);
        const li = document.createElement("li");
        li.className = path === open ? "file open" : "file";
        li.dataset.path = path;
        const radio = document.createElement("input");
        radio.type = "radio"; radio.name = "main-file"; radio.value = path; radio.checked = path === main;
        radio.title = "The main file: the scene file the render runs";
        radio.setAttribute("aria-label", `Main file: ${path}`);
        radio.disabled = !isPython(path);
        radio.addEventListener("change", () => { if (radio.checked) { main = path; changed(); } });
        const name = document.createElement("button");
        name.type = "button"; name.className = "file-open";
        name.textContent = path;
        if (path === open) name.setAttribute("aria-current", "true");
        name.title = f.digest ? `${path} · ${sizeText(f.size)} · uploaded once, sent by its digest` : `${path} · text, sent inline`;
        name.addEventListener("click", () => show(path));
        const kind = document.createElement("span");
        kind.className = "file-kind";
        kind.textContent = f.digest ? sizeText(f.size) : path === main ? "main" : "";
        const rename = button("✎", `Rename ${path}`, () => ask("rename", path));
        const del = button("×", `Delete ${path}`, () => remove(path));
        li.append(radio, name, kind, rename, del);
        list.appendChild(li);
        if (had && had.path === path) li.children[had.at].focus();
      }
    }
    function button(text, label, run) {
      const b = document.createElement("button");
      b.type = "button"; b.className = "file-action"; b.textContent = text;
      b.title = label; b.setAttribute("aria-label", label);
      b.addEventListener("click", run);
      return b;
    }
    const focusRow = (path) => {
      const row = [...list.children].find((li) => li.dataset.path === path);
      if (row) row.querySelector(".file-open").focus();
    };

    // Opens a file: text in the editor, an image or a sound in the preview,
    // anything else described there.
    function show(path) {
      const f = files.get(path);
      if (!f) return;
      open = path;
      if (previewUrl) { URL.revokeObjectURL(previewUrl); previewUrl = null; }
      if (f.digest === undefined) {
        preview.hidden = true; preview.replaceChildren();
        $("editor").hidden = false;
        editor.open(path, f.text);
        if (editor.view) editor.view.requestMeasure();
      } else {
        $("editor").hidden = true;
        preview.hidden = false;
        describe(path, f);
      }
      saveSoon(); draw();
    }
    async function describe(path, f) {
      const head = document.createElement("p");
      head.textContent = `${path} · ${sizeText(f.size)} · ${f.digest.slice(0, 19)}…`;
      head.title = f.digest; head.className = "file-digest";
      preview.replaceChildren(head);
      const bytes = await getBytes(f.digest).catch(() => null);
      if (open !== path) return;
      if (!bytes) { head.append(" · its bytes are not in this browser: upload it again if the server no longer has it"); return; }
      previewUrl = URL.createObjectURL(bytes.type ? bytes : new Blob([bytes], { type: f.type }));
      if (IMAGE.test(path)) {
        const img = document.createElement("img");
        img.alt = path; img.src = previewUrl; img.className = "file-image";
        preview.appendChild(img);
      } else if (AUDIO.test(path)) {
        const audio = document.createElement("audio");
        audio.controls = true; audio.src = previewUrl; audio.setAttribute("aria-label", path);
        preview.appendChild(audio);
      }
    }

    // The name form: a new file's name, or a file's new name.
    function ask(mode, path) {
      formMode = { mode, path };
      $("file-form-label").textContent = mode === "new" ? "New file" : `Rename ${path} to`;
      nameField.value = mode === "new" ? "" : path;
      form.hidden = false; note("");
      nameField.focus(); nameField.select();
    }
    function closeForm(focusOn) {
      form.hidden = true; formMode = null;
      if (focusOn) focusRow(focusOn);
    }
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const { path, error } = normalise(nameField.value);
      if (error) { note(error); return; }
      const { mode, path: from } = formMode || {};
      if (path !== from && files.has(path)) { note(`${path} exists already`); return; }
      if (mode === "new") {
        files.set(path, { text: isPython(path) ? "from manim import *\n" : "" });
        closeForm(); changed(); show(path);
        if (files.get(path).digest === undefined) editor.focus();
      } else if (mode === "rename") {
        if (from === main && !isPython(path)) { note("the main file must be a .py file"); return; }
        if (path !== from) {
          files = new Map([...files].map(([p, f]) => [p === from ? path : p, f]));
          editor.rename(from, path);
          if (main === from) main = path;
          if (open === from) open = path;
        }
        closeForm(); changed(); focusRow(path);
      }
    });
    $("file-cancel").addEventListener("click", () => closeForm(formMode && formMode.path));
    nameField.addEventListener("keydown", (e) => {
      if (e.key === "Escape") { e.preventDefault(); closeForm(formMode && formMode.path); }
    });
    $("file-new").addEventListener("click", () => ask("new"));

    function remove(path) {
      if (path === main) { note("This is the main file: choose another main file before deleting it."); return; }
      if (!confirm(`Delete ${path}?`)) return;
      files.delete(path);
      editor.forget(path);
      if (open === path) show(main);
      changed(); note(`${path} deleted`);
      focusRow(main);
    }
    const digests = () => new Set([...files.values()].filter((f) => f.digest).map((f) => f.digest));

    // Uploads: text goes inline (and opens in the editor); other files are
    // hashed, their bytes kept in IndexedDB, and sent as blobs.
    const picker = $("file-upload");
    $("file-upload-button").addEventListener("click", () => picker.click());
    picker.addEventListener("change", async () => {
      const chosen = [...picker.files];
      picker.value = "";
      const added = [];
      for (const file of chosen) {
        const { path, error } = normalise(file.name);
        if (error) { note(`${file.name}: ${error}`); continue; }
        const text = await inlineText(file);
        if (text === null && isPython(path)) { note(`${file.name}: a Python file must be UTF-8 text of at most 1 MiB`); continue; }
        if (text !== null) {
          files.set(path, { text });
          editor.forget(path);
        } else {
          const digest = await sha256(file);
          await putBytes(digest, file.slice(0, file.size, file.type || typeOf(path)));
          if (files.has(path) && files.get(path).digest === undefined) editor.forget(path);
          files.set(path, { digest, size: file.size, type: file.type || typeOf(path) });
        }
        added.push(path);
      }
      if (!added.length) return;
      note(`added ${added.join(", ")}`);
      changed(); show(added[added.length - 1]);
    });

    // Uploads the blobs the server lacks (it may have collected one a day
    // after its last use, or the key changed); says how many it sent.
    async function upload(status) {
      const blobs = [...files].filter(([, f]) => f.digest);
      if (!blobs.length) return 0;
      const r = await api("/v1/blobs/missing", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ digests: blobs.map(([, f]) => f.digest) }) });
      if (!r.ok) throw await refusal(r);
      const { missing } = await r.json();
      for (const digest of missing) {
        const [path] = blobs.find(([, f]) => f.digest === digest);
        const bytes = await getBytes(digest).catch(() => null);
        if (!bytes) throw { code: "missing-blob", message: `${path}: its bytes are not in this browser any more; upload it again`, file: path };
        if (status) status(`uploading ${path} (${sizeText(bytes.size)})…`);
        const put = await api(`/v1/blobs/${digest}`, { method: "PUT", headers: { "content-type": "application/octet-stream" }, body: bytes });
        if (!put.ok) throw await refusal(put);
      }
      return missing.length;
    }
    const refusal = async (r) => ((await r.json().catch(() => null)) || {}).error || { code: String(r.status), message: r.statusText };

    // The request's files: `code` for a project of one file, else `files`
    // and `main`, once the server has every blob. Throws the typed error
    // (as the server writes them) when an upload is refused.
    async function request(status) {
      if (files.size === 1 && files.get(main)) return { code: files.get(main).text };
      await upload(status);
      const map = {};
      for (const [path, f] of files) map[path] = f.digest || f.text;
      return { files: map, main };
    }

    // Keeps the open file's text as the editor changes it.
    function edited() {
      const f = files.get(editor.current && editor.current());
      if (f && f.digest === undefined) { f.text = editor.getCode(); saveSoon(); }
    }

    const restored = load();
    draw();
    show(open);
    pruneBytes(digests()).catch(() => {});
    return {
      restored,
      request,
      edited,
      show,
      has: (path) => files.has(path),
      isText: (path) => files.has(path) && files.get(path).digest === undefined,
      main: () => main,
      // Opens the main file (the timeline's and storyboard's lines are its).
      showMain: () => { if (open !== main) show(main); },
    };
  }
  return { createPanel };
})();
