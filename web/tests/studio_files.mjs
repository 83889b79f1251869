// Drives the studio's files panel in Debian's Chromium as a person would,
// with the keyboard where a keyboard user would use it: add a helper module,
// upload a PNG (hashed in the page, uploaded as a blob) and see it shown,
// add a second scene file and choose it as the main file, check that each
// file keeps its own undo history, render and watch the video play; reload
// and find the project as it was (the PNG's bytes too); rename the helper
// and the image, delete the default scene file, render again; then the
// panel on a phone. Against a server with API keys: the blob calls carry
// the key like every other. Prints each render's job id and the PNG's
// digest for the Rust test to check on the server's side. Screenshots go
// to OUT_DIR.
//
//   node studio_files.mjs BASE_URL OUT_DIR PNG_PATH API_KEY
import { fail, getCode, openStudio, setCode } from "./chromium.mjs";

const [base, out, pngPath, key] = process.argv.slice(2);
if (!key) fail("usage: studio_files.mjs BASE_URL OUT_DIR PNG_PATH API_KEY");
// The test's own calls from the page, with the key.
const call = (path, init) => page.evaluate(async ([path, init, key]) => {
  const r = await fetch(path, { ...init, headers: { ...(init || {}).headers, authorization: `Bearer ${key}` } });
  return { status: r.status, body: await r.json().catch(() => null) };
}, [path, init, key]);
const { browser, page, clean } = await openStudio(base);
// A delete asks first: yes.
page.on("dialog", (d) => d.accept());
// Said as they happen, so that a failure's cause is in the output.
page.on("pageerror", (e) => console.error(`page error: ${e}`));

const HELPERS = "from manim import *\n\nSIDE = 2\n\ndef framed(m):\n    return Group(m, SurroundingRectangle(m, color=YELLOW))";
const movie = (helper, image) => `from manim import *\nfrom ${helper} import SIDE, framed\n\nclass Movie(Scene):\n    def construct(self):\n        photo = ImageMobject("${image}").scale_to_fit_height(SIDE)\n        self.play(FadeIn(framed(photo)), run_time=0.5)\n        self.play(Create(Square(SIDE)), run_time=0.5)`;

// The panel as shown: each file's path, whether it is open, whether it is
// the main file, and what the row says beside it.
const listed = () => page.$$eval("#file-list li", (all) => all.map((li) => ({
  path: li.dataset.path,
  open: li.querySelector(".file-open").getAttribute("aria-current") === "true",
  main: li.querySelector("input[type=radio]").checked,
  kind: li.querySelector(".file-kind").textContent,
})));
const paths = async () => (await listed()).map((f) => f.path).join(" ");
const row = (path) => `#file-list li[data-path="${path}"]`;
const openFile = async (path) => {
  await page.click(`${row(path)} .file-open`);
  if (!(await listed()).find((f) => f.path === path && f.open)) fail(`${path} did not open: ${JSON.stringify(await listed())}`);
};
const statusText = () => page.textContent("#status");
const waitStatus = (re, timeout = 120000) =>
  page.waitForFunction((src) => new RegExp(src).test(document.getElementById("status").textContent), re.source, { timeout })
    .catch(async () => fail(`status never matched ${re}: ${await statusText()} ${await page.textContent("#error")}`));
// The image the preview shows, once loaded: its source and natural size.
const previewImage = () => page.waitForFunction(() => {
  const img = document.querySelector("#file-preview img");
  return img && img.complete && img.naturalWidth > 0 ? { src: img.src, width: img.naturalWidth, height: img.naturalHeight } : false;
}, null, { timeout: 10000 }).then((h) => h.jsonValue()).catch(() => null);
// Renders with the button and waits for the video to play; returns the job.
async function render(name) {
  await page.click("#render");
  // (An identical earlier project comes from the cache.)
  await waitStatus(/^(done|from the cache)/);
  const video = await page.waitForFunction(() => {
    const v = document.getElementById("player");
    return v.readyState >= 2 && v.videoWidth > 0 ? { width: v.videoWidth, duration: v.duration } : false;
  }, null, { timeout: 30000 }).then((h) => h.jsonValue()).catch(() => null);
  await page.screenshot({ path: `${out}/${name}` });
  if (!video || !(video.duration > 0.5)) fail(`the video did not play: ${JSON.stringify(video)}`);
  const job = (await call("/v1/renders?limit=1")).body.renders[0];
  const scenes = [...new Set(((job.result || {}).animations || []).map((a) => a.scene))];
  if (job.status !== "succeeded" || scenes.join() !== "Movie") fail(`not the main file's scene: ${JSON.stringify(job)}`);
  return { id: job.id, video };
}

try {
  await page.waitForSelector(".cm-editor .cm-content");
  await page.fill("#api-key", key);
  await page.press("#api-key", "Tab");
  // A new project: the page's scene, as scene.py, the main file.
  let files = await listed();
  if (files.length !== 1 || files[0].path !== "scene.py" || !files[0].main || !files[0].open) fail(`a new project: ${JSON.stringify(files)}`);

  // A helper module, added from the keyboard: the button, its name, Enter.
  await page.focus("#file-new");
  await page.keyboard.press("Enter");
  if (!(await page.evaluate(() => document.activeElement.id === "file-name"))) fail("the name field did not take the focus");
  await page.keyboard.type("helpers.py");
  await page.keyboard.press("Enter");
  if ((await paths()) !== "helpers.py scene.py") fail(`after adding helpers.py: ${await paths()}`);
  if (!(await page.evaluate(() => document.querySelector(".cm-editor").contains(document.activeElement)))) fail("the new file's editor did not take the focus");
  await setCode(page, HELPERS);

  // A bad name is refused where it is typed, with the reason.
  await page.click("#file-new");
  await page.keyboard.type("../up.py");
  await page.keyboard.press("Enter");
  if (!/\.\./.test(await page.textContent("#file-note"))) fail(`../up.py was not refused: ${await page.textContent("#file-note")}`);
  await page.keyboard.press("Escape");
  if (await page.isVisible("#file-form")) fail("Escape did not close the name form");

  // The PNG: uploaded, hashed in the page, shown in place of the editor.
  await page.setInputFiles("#file-upload", pngPath);
  await page.waitForSelector(`${row("photo.png")}`, { timeout: 10000 });
  const image = await previewImage();
  const digest = await page.getAttribute("#file-preview .file-digest", "title");
  await page.screenshot({ path: `${out}/studio-files-image.png` });
  if (!image || !image.src.startsWith("blob:") || image.width !== 32) fail(`the PNG is not shown: ${JSON.stringify(image)}`);
  if (!/^sha256:[0-9a-f]{64}$/.test(digest || "")) fail(`no digest: ${digest}`);
  if (await page.isVisible(".cm-editor")) fail("the editor still shows for an image");

  // A second scene file, chosen as the main file with its radio button.
  await page.click("#file-new");
  await page.keyboard.type("movie.py");
  await page.keyboard.press("Enter");
  await setCode(page, movie("helpers", "photo.png"));
  await page.check(`${row("movie.py")} input[type=radio]`);
  files = await listed();
  if (!files.find((f) => f.path === "movie.py").main || files.filter((f) => f.main).length !== 1) fail(`main: ${JSON.stringify(files)}`);

  // Each file keeps its own edit state: an edit in helpers.py survives a
  // visit to another file and is then undone there.
  await openFile("helpers.py");
  if ((await getCode(page)) !== HELPERS) fail(`helpers.py reads:\n${await getCode(page)}`);
  await page.click(".cm-content");
  await page.keyboard.press("Control+End");
  await page.keyboard.type("\n# draft");
  await openFile("movie.py");
  if ((await getCode(page)) !== movie("helpers", "photo.png")) fail("movie.py changed");
  await openFile("helpers.py");
  if (!(await getCode(page)).endsWith("# draft")) fail("the edit did not survive switching files");
  await page.click(".cm-content");
  for (let i = 0; i < 3 && (await getCode(page)) !== HELPERS; i++) await page.keyboard.press("Control+Z");
  if ((await getCode(page)) !== HELPERS) fail(`undo after switching files:\n${await getCode(page)}`);

  // Render: files + main, the PNG uploaded as a blob first.
  const first = await render("studio-files-rendered.png");

  // The storyboard follows the project too (where the server has previews).
  const previews = (await call("/v1/previews", { method: "POST", headers: { "content-type": "application/json" }, body: "{}" })).status;
  let storyboard = "skipped (no previews on this server)";
  if (previews !== 404) {
    await openFile("movie.py");
    await page.click(".cm-content");
    await page.keyboard.press("Control+End");
    await page.keyboard.type("\nself.wait(0.1)");   // Enter keeps the indentation
    const stills = await page.waitForFunction(() => {
      const all = [...document.querySelectorAll("#frames .frame")].map((f) => f.title);
      return !document.getElementById("storyboard").hidden && all.length === 3 ? all : false;
    }, null, { timeout: 60000 }).then((h) => h.jsonValue()).catch(async () => fail(`no storyboard for the project: ${await page.textContent("#storyboard")} ${await page.textContent("#error")}`));
    if (!/FadeIn/.test(stills[0]) || !/Create/.test(stills[1])) fail(`storyboard: ${JSON.stringify(stills)}`);
    await page.screenshot({ path: `${out}/studio-files-storyboard.png` });
    await setCode(page, movie("helpers", "photo.png"));
    storyboard = `${stills.length} stills`;
  }

  // A reload: the project is still there, the PNG's bytes too.
  await page.reload();
  await page.waitForSelector(".cm-editor .cm-content");
  files = await listed();
  if ((await paths()) !== "helpers.py movie.py photo.png scene.py") fail(`after a reload: ${JSON.stringify(files)}`);
  if (!files.find((f) => f.path === "movie.py").main) fail(`the main file was not kept: ${JSON.stringify(files)}`);
  if ((await getCode(page)) !== movie("helpers", "photo.png")) fail(`the open file after a reload:\n${await getCode(page)}`);
  await openFile("helpers.py");
  if ((await getCode(page)) !== HELPERS) fail(`helpers.py after a reload:\n${await getCode(page)}`);
  await openFile("photo.png");
  const again = await previewImage();
  await page.screenshot({ path: `${out}/studio-files-reloaded.png` });
  if (!again || again.width !== 32) fail(`the PNG's bytes did not survive the reload: ${JSON.stringify(again)}`);

  // Rename, from the keyboard: the helper module and the image.
  for (const [from, to] of [["helpers.py", "shapes.py"], ["photo.png", "art/photo.png"]]) {
    await page.focus(`${row(from)} button[aria-label="Rename ${from}"]`);
    await page.keyboard.press("Enter");
    if ((await page.inputValue("#file-name")) !== from) fail(`the rename form does not hold ${from}`);
    await page.keyboard.press("Control+A");
    await page.keyboard.type(to);
    await page.keyboard.press("Enter");
  }
  if ((await paths()) !== "art/photo.png movie.py scene.py shapes.py") fail(`after renaming: ${await paths()}`);
  await openFile("shapes.py");
  if ((await getCode(page)) !== HELPERS) fail("the renamed file lost its text");
  await openFile("movie.py");
  await setCode(page, movie("shapes", "art/photo.png"));

  // Delete: the main file is refused (choose another first); another goes.
  await page.click(`${row("movie.py")} button[aria-label="Delete movie.py"]`);
  if (!/main file/.test(await page.textContent("#file-note"))) fail(`deleting the main file: ${await page.textContent("#file-note")}`);
  await page.click(`${row("scene.py")} button[aria-label="Delete scene.py"]`);
  if ((await paths()) !== "art/photo.png movie.py shapes.py") fail(`after deleting: ${await paths()}`);

  // The renamed project renders: the request carries the new paths.
  const second = await render("studio-files-renamed.png");

  // And survives another reload as it now is.
  await page.reload();
  await page.waitForSelector(".cm-editor .cm-content");
  if ((await paths()) !== "art/photo.png movie.py shapes.py") fail(`after the second reload: ${await paths()}`);

  // On a phone: the panel fits, its buttons within reach.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(300);
  const phone = await page.evaluate(() => {
    const box = (el) => { const r = el.getBoundingClientRect(); return { left: r.left, right: r.right, width: r.width, height: r.height }; };
    return {
      scroll: document.documentElement.scrollWidth,
      parts: [...document.querySelectorAll("#file-new, #file-upload-button, #file-list input, #file-list button, .cm-editor")].map((el) => ({ what: el.getAttribute("aria-label") || el.id || el.className, ...box(el) })),
    };
  });
  await page.screenshot({ path: `${out}/studio-files-phone.png`, fullPage: true });
  if (phone.scroll > 390) fail(`the page scrolls sideways on a phone: ${JSON.stringify(phone)}`);
  for (const p of phone.parts) if (p.left < 0 || p.right > 390 || p.width < 10 || p.height < 10) fail(`${p.what} does not fit a phone: ${JSON.stringify(p)}`);
  clean();
  console.log(`digest=${digest}`);
  console.log(`job1=${first.id}`);
  console.log(`job2=${second.id}`);
  console.log(`ok: a project of helpers.py, photo.png (${image.width} px, shown) and movie.py as main rendered (${first.video.duration.toFixed(2)} s); each file kept its undo history; kept across reloads; renamed, deleted and rendered again; storyboard ${storyboard}; fits 390 px`);
} finally {
  await browser.close();
}
