// Drives the studio's editor (CodeMirror) in Debian's Chromium as a person
// would, against a server started with API keys: the page asks for the key,
// keeps it for the tab and sends it with every request (a wrong one is
// refused); a scene typed line by line is indented as Python, a name is
// completed from the engine's own names (and the list follows the engine
// choice), brackets match, undo and search work, Escape leaves the editor
// and Tab indents in it; Ctrl+Enter renders and the video plays; a failing
// scene's line is marked with its message; and the page fits a phone.
// Screenshots go to OUT_DIR.
//
//   node studio_editor.mjs BASE_URL OUT_DIR API_KEY
import { fail, getCode, markedLine, openStudio, setCode } from "./chromium.mjs";

const [base, out, key] = process.argv.slice(2);
if (!key) fail("usage: studio_editor.mjs BASE_URL OUT_DIR API_KEY");
const { browser, page, clean } = await openStudio(base);
const statusText = () => page.textContent("#status");
const waitStatus = (re, timeout = 120000) =>
  page.waitForFunction((src) => new RegExp(src).test(document.getElementById("status").textContent), re.source, { timeout })
    .catch(async () => fail(`status never matched ${re}: ${await statusText()}`));
// The completion list as shown: each option's label and detail, and which is selected.
const completions = () => page.$$eval(".cm-tooltip-autocomplete li", (all) => all.map((li) => ({
  label: li.querySelector(".cm-completionLabel").textContent,
  detail: (li.querySelector(".cm-completionDetail") || {}).textContent || "",
  selected: li.getAttribute("aria-selected") === "true",
})));
const inEditor = () => page.evaluate(() => document.querySelector(".cm-editor").contains(document.activeElement));
const jobsSeen = () => page.evaluate(async (k) => {
  const r = await fetch("/v1/renders?limit=50", { headers: { authorization: `Bearer ${k}` } });
  return (await r.json()).renders.length;
}, key);

try {
  // The editor replaced the text area, highlights Python with the studio's
  // colours, and the page says the server wants a key.
  await page.waitForSelector(".cm-editor .cm-content");
  if (await page.$("#code")) fail("the plain text area is still there: the editor bundle did not load");
  const keyword = await page.$eval(".tok-keyword", (k) => ({ text: k.textContent, color: getComputedStyle(k).color }));
  if (keyword.color !== "rgb(199, 146, 234)") fail(`keywords are not highlighted: ${JSON.stringify(keyword)}`);
  await waitStatus(/needs an API key/, 30000);
  await page.screenshot({ path: `${out}/studio-editor-key-asked.png` });

  // The key is kept for the tab: it survives a reload, and the recent
  // renders load with it.
  await page.fill("#api-key", key);
  await page.press("#api-key", "Tab");
  if ((await page.evaluate(() => sessionStorage.getItem("manimd-api-key"))) !== key) fail("the key is not in session storage");
  await page.reload();
  await page.waitForSelector(".cm-editor .cm-content");
  if ((await page.inputValue("#api-key")) !== key) fail("the key did not survive a reload");
  await page.waitForTimeout(1000);
  if (/needs an API key/.test(await statusText())) fail(`the key was not sent: ${await statusText()}`);

  // Typed line by line: Enter indents after a colon and keeps the indentation.
  await setCode(page, "");
  await page.keyboard.type("from manim import *\n\nclass Typed(Scene):\ndef construct(self):\nc = Circ", { delay: 20 });
  // The completion offers the engine's Circle; take it with Enter.
  await page.waitForSelector(".cm-tooltip-autocomplete", { timeout: 10000 });
  // On a loaded machine the list shown may answer an earlier keystroke, and
  // the last one's answer replaces it (and its selection) later: wait until
  // it stays the same over two looks.
  let offered = await completions();
  for (let same = 0, looks = 0; same < 2 && looks < 40; looks++) {
    await page.waitForTimeout(150);
    const now = await completions();
    same = JSON.stringify(now) === JSON.stringify(offered) ? same + 1 : 0;
    offered = now;
  }
  const circle = offered.find((o) => o.label === "Circle");
  if (!circle || circle.detail !== "Manim Community") fail(`Circle is not offered from Manim Community: ${JSON.stringify(offered.slice(0, 12))}`);
  for (let i = 0; i < offered.length && !(await completions()).find((o) => o.selected && o.label === "Circle"); i++) await page.keyboard.press("ArrowDown");
  await page.screenshot({ path: `${out}/studio-editor-completion.png` });
  await page.keyboard.press("Enter");
  // Brackets close as they open (and typing the closer steps over it).
  await page.keyboard.type("(color=BLUE)\nself.play(Create(c), run_time=0.3)", { delay: 20 });
  await page.keyboard.press("Escape");   // a completion list left open, if any
  const typed = "from manim import *\n\nclass Typed(Scene):\n    def construct(self):\n        c = Circle(color=BLUE)\n        self.play(Create(c), run_time=0.3)";
  if ((await getCode(page)) !== typed) fail(`typed code:\n${await getCode(page)}`);
  // The cursor is after the last closing bracket: it and its opener are marked.
  await page.keyboard.press("End");
  const matching = await page.$$eval(".cm-matchingBracket", (all) => all.map((b) => b.textContent).join(""));
  if (matching !== "()") fail(`brackets not matched: ${matching}`);

  // Undo takes back the last edit only.
  await page.waitForTimeout(700);
  await page.keyboard.type("  # oops");
  await page.waitForTimeout(700);
  if (!(await getCode(page)).endsWith("# oops")) fail("typing at the end did not land");
  await page.keyboard.press("Control+Z");
  if ((await getCode(page)) !== typed) fail(`undo did not restore the code:\n${await getCode(page)}`);

  // The completion follows the engine choice: ManimGL's ShowCreation, which
  // Manim Community does not have.
  await page.selectOption("#engine", "manimgl");
  await page.click(".cm-content");
  await page.keyboard.press("Control+End");
  await page.keyboard.type("\nShowCrea");
  await page.waitForSelector(".cm-tooltip-autocomplete", { timeout: 10000 });
  offered = await completions();
  if (!offered.some((o) => o.label === "ShowCreation" && o.detail === "ManimGL")) fail(`ManimGL's ShowCreation not offered: ${JSON.stringify(offered)}`);
  await page.keyboard.press("Escape");
  if (!(await inEditor())) fail("Escape with the completion open left the editor instead of closing the list");
  await page.selectOption("#engine", "manim");
  await page.click(".cm-content");
  await page.keyboard.press("Control+End");
  await page.keyboard.press("Control+Space");
  await page.waitForTimeout(500);
  offered = await page.$(".cm-tooltip-autocomplete") ? await completions() : [];
  if (offered.some((o) => o.label === "ShowCreation")) fail("Manim Community offers ManimGL's ShowCreation");
  await page.keyboard.press("Escape");
  await setCode(page, typed);

  // Search: Ctrl+F opens the panel, the matches are marked, Escape closes it.
  await page.keyboard.press("Control+F");
  await page.waitForSelector(".cm-search input[name=search]", { timeout: 5000 });
  await page.keyboard.type("Circle");
  await page.keyboard.press("Enter");
  const matches = await page.$$eval(".cm-searchMatch", (all) => all.length);
  if (matches < 1) fail("search marked no match of Circle");
  await page.keyboard.press("Escape");
  if (await page.$(".cm-search")) fail("Escape did not close the search panel");

  // Tab indents inside the editor; Escape leaves it for the next control.
  await page.click(".cm-content .cm-line >> nth=0");
  await page.keyboard.press("Tab");
  if (!(await getCode(page)).startsWith("    from manim")) fail("Tab did not indent the line");
  await page.keyboard.press("Shift+Tab");
  if ((await getCode(page)) !== typed) fail("Shift+Tab did not take the indentation back");
  if (!(await inEditor())) fail("Tab left the editor");
  await page.keyboard.press("Escape");
  const left = await page.evaluate(() => ({ inEditor: document.querySelector(".cm-editor").contains(document.activeElement), tag: document.activeElement.tagName }));
  if (left.inEditor || left.tag === "BODY") fail(`Escape did not move the focus on: ${JSON.stringify(left)}`);

  // Ctrl+Enter in the editor renders, once, and the video plays (fetched
  // with the key: an element cannot send it).
  const before = await jobsSeen();
  await page.click(".cm-content");
  await page.keyboard.press("Control+Enter");
  await waitStatus(/^done/);
  const video = await page.waitForFunction(() => {
    const v = document.getElementById("player");
    return v.readyState >= 2 && v.videoWidth > 0 ? { src: v.currentSrc, width: v.videoWidth, duration: v.duration } : false;
  }, null, { timeout: 30000 }).then((h) => h.jsonValue()).catch(() => null);
  await page.screenshot({ path: `${out}/studio-editor-rendered.png` });
  if (!video) fail("the video did not load");
  if (!video.src.startsWith("blob:")) fail(`the video was not fetched with the key: ${video.src}`);
  if (!(video.duration > 0.2)) fail(`video: ${JSON.stringify(video)}`);
  const after = await jobsSeen();
  if (after !== before + 1) fail(`Ctrl+Enter submitted ${after - before} renders`);

  // A failing scene: its line is marked in the editor with the message.
  const broken = "from manim import *\n\nclass Broken(Scene):\n    def construct(self):\n        self.play(Create(Circle()), run_time=0.2)\n        x = 1 / 0\n# " + Date.now();
  await setCode(page, broken);
  await page.keyboard.press("Control+Enter");
  await waitStatus(/^failed/);
  const error = await page.waitForFunction(() => document.querySelector(".cm-errorLine"), null, { timeout: 10000 })
    .then(() => markedLine(page, "cm-errorLine")).catch(() => null);
  const gutter = await page.$$eval(".cm-lint-marker-error", (all) => all.length);
  await page.screenshot({ path: `${out}/studio-editor-error.png` });
  if (!error || error.line !== "6" || error.index !== 6 || error.text !== "        x = 1 / 0") fail(`the failing line is not marked: ${JSON.stringify(error)}`);
  if (!/ZeroDivisionError/.test(error.note || "")) fail(`no message beside the line: ${JSON.stringify(error)}`);
  if (gutter !== 1) fail(`${gutter} error markers in the gutter`);
  // The next edit takes the mark away: it described the code as it was.
  await page.keyboard.type("x");
  if (await markedLine(page, "cm-errorLine")) fail("the error mark outlived an edit");

  // A wrong key is refused, and the page says so.
  await page.fill("#api-key", "not-the-key");
  await page.press("#api-key", "Tab");
  await waitStatus(/needs an API key/, 10000);
  await page.click(".cm-content");
  await page.keyboard.press("Control+Enter");
  await waitStatus(/refused \(401\)/, 10000);
  if (!(await page.textContent("#error")).includes("unauthorized")) fail(`no unauthorized error: ${await page.textContent("#error")}`);
  await page.fill("#api-key", key);
  await page.press("#api-key", "Tab");

  // On a phone: nothing wider than the screen, the editor and the render
  // button within reach, and typing still works.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(300);
  const phone = await page.evaluate(() => {
    const box = (sel) => { const r = document.querySelector(sel).getBoundingClientRect(); return { left: r.left, right: r.right, width: r.width, height: r.height }; };
    return { scroll: document.documentElement.scrollWidth, editor: box(".cm-editor"), render: box("#render"), key: box("#api-key"), player: box("#player") };
  });
  await page.screenshot({ path: `${out}/studio-editor-phone.png`, fullPage: true });
  if (phone.scroll > 390) fail(`the page scrolls sideways on a phone: ${JSON.stringify(phone)}`);
  for (const part of ["editor", "render", "key", "player"]) {
    const b = phone[part];
    if (b.left < 0 || b.right > 390 || b.width < 20 || b.height < 10) fail(`${part} does not fit a phone: ${JSON.stringify(phone)}`);
  }
  await setCode(page, typed);
  if ((await getCode(page)) !== typed) fail("the editor does not take text on a phone");
  clean();
  console.log(`ok: typed, completed Circle, matched brackets, undid, searched, left with Escape; rendered once with Ctrl+Enter (${video.width} px, ${video.duration.toFixed(2)} s, fetched with the key); line ${error.line} marked with "${error.note}"; a wrong key refused; fits 390 px; node ${process.version}`);
} finally {
  await browser.close();
}
