// Drives the studio's timeline and storyboard in Debian's Chromium as a
// person would: render a scene of three plays with Ctrl+Enter, find one mark
// per play with its name on hover, click the second to seek the video to it
// and see its line selected in the editor; edit only the last play, render
// again and see exactly that mark marked as changed; then the same on a
// phone-sized screen. The storyboard is checked only where the server has
// POST /v1/previews (a 404 skips it, saying so). Screenshots go to OUT_DIR.
//
//   node studio_timeline.mjs BASE_URL OUT_DIR
import { fail, markedLine, openStudio, setCode } from "./chromium.mjs";

const [base, out] = process.argv.slice(2);
const { browser, page, clean } = await openStudio(base);

// Three plays, on lines 6, 7 and 8.
const scene = (last) => ["from manim import *", "", "class Three(Scene):", "    def construct(self):",
  "        sq = Square(color=BLUE)", "        self.play(Create(sq), run_time=0.5)",
  "        self.play(Rotate(sq, PI / 4), run_time=0.5)", `        self.play(${last}, run_time=0.5)`].join("\n");
const done = () => page.waitForFunction(() => document.getElementById("status").textContent.startsWith("done"), null, { timeout: 120000 });
const marks = () => page.$$eval("#marks .mark", (all) => all.map((m) => {
  const box = m.getBoundingClientRect();
  return { title: m.title, changed: m.classList.contains("changed"), x: box.x, width: box.width };
}));
// The line the editor shows as picked: its number and text, and the
// editor's selection (which the pick selects).
const picked = async () => {
  const row = await markedLine(page, "cm-pickedLine");
  const selection = await page.$$eval(".cm-selectionBackground", (all) => all.length);
  return { line: row && row.line, text: row && row.text, selection };
};

try {
  await setCode(page, scene("FadeOut(sq)"));
  await page.keyboard.press("Control+Enter");
  await done();
  let shown = await marks();
  if (shown.length !== 3) fail(`expected 3 marks, got ${JSON.stringify(shown)}`);
  ["Create", "Rotate", "FadeOut"].forEach((name, i) => {
    if (!shown[i].title.includes(name)) fail(`mark ${i + 1} does not name ${name} on hover: ${shown[i].title}`);
  });
  if (!shown.every((m, i) => m.width > 0 && (i === 0 || m.x > shown[i - 1].x))) fail(`marks not laid out in order: ${JSON.stringify(shown)}`);
  // A first render reused nothing, so no mark stands out.
  if (shown.some((m) => m.changed)) fail(`a first render marks changes: ${JSON.stringify(shown)}`);

  // Click the second mark: the player seeks to its start (paused, so that
  // it stays there) and the editor selects its line.
  const start = Number(/ · (\d+\.\d+)–/.exec(shown[1].title)[1]);
  if (!(start > 0.3 && start < 0.8)) fail(`the second play starts at ${start} s`);
  await page.evaluate(() => document.getElementById("player").pause());
  await page.hover("#marks .mark >> nth=1");
  await page.click("#marks .mark >> nth=1");
  const at = await page.waitForFunction((s) => {
    const v = document.getElementById("player");
    return !v.seeking && Math.abs(v.currentTime - s) < 0.05 ? v.currentTime : false;
  }, start, { timeout: 10000 }).then((h) => h.jsonValue()).catch(() => null);
  await page.screenshot({ path: `${out}/studio-timeline.png` });
  if (at === null) fail(`the player did not seek to ${start} s (at ${await page.evaluate(() => document.getElementById("player").currentTime)})`);
  const sel = await picked();
  if (sel.line !== "7" || sel.text !== "        self.play(Rotate(sq, PI / 4), run_time=0.5)" || sel.selection < 1) fail(`line 7 not selected: ${JSON.stringify(sel)}`);
  const now = await page.$$eval("#marks .mark", (all) => all.map((m) => m.classList.contains("now")));
  if (now.join() !== "false,true,false") fail(`the second mark is not shown as playing: ${now}`);

  // Edit only the last play: the render reuses the first two, and only the
  // last mark is marked as changed.
  await setCode(page, scene("FadeOut(sq, shift=DOWN)"));
  await page.click("#render");
  await done();
  shown = await marks();
  await page.screenshot({ path: `${out}/studio-timeline-changed.png` });
  if (shown.map((m) => m.changed).join() !== "false,false,true") fail(`expected only the last mark changed: ${JSON.stringify(shown)}`);
  if (!shown[2].title.includes("changed")) fail(`the changed mark does not say so on hover: ${shown[2].title}`);
  const legend = await page.textContent("#legend");
  if (!legend.includes("changed by the edit: 1 of 3")) fail(`legend: ${legend}`);

  // On a phone the marks still fit the width and can be tapped.
  await page.setViewportSize({ width: 390, height: 844 });
  shown = await marks();
  if (shown.length !== 3 || shown.some((m) => m.x < 0 || m.x + m.width > 390 || m.width < 20)) fail(`marks on a phone: ${JSON.stringify(shown)}`);
  await page.click("#marks .mark >> nth=2");
  if ((await picked()).line !== "8") fail("tapping the last mark did not show line 8");
  await page.screenshot({ path: `${out}/studio-timeline-phone.png`, fullPage: true });
  await page.setViewportSize({ width: 1280, height: 800 });

  // The storyboard, where the server has previews.
  const probe = await page.evaluate(async () => (await fetch("/v1/previews", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ code: "", kind: "storyboard" }) })).status);
  let storyboard;
  if (probe === 404) {
    // The edits above asked for previews too: the strip stays hidden.
    if (await page.isVisible("#storyboard")) fail("the storyboard shows on a server without previews");
    storyboard = "skipped (POST /v1/previews answers 404 on this server)";
    console.log("skip: storyboard: POST /v1/previews answers 404 on this server");
  } else {
    // A pause in typing refreshes it: one still per play, each clickable.
    await setCode(page, scene("FadeOut(sq)"));
    await page.waitForFunction(() => {
      const imgs = [...document.querySelectorAll("#frames .frame img")];
      return imgs.length >= 3 && imgs.every((i) => i.complete && i.naturalWidth > 0);
    }, null, { timeout: 120000 });
    const titles = await page.$$eval("#frames .frame", (all) => all.map((f) => f.title));
    const second = titles.findIndex((t) => t.includes("Rotate"));
    if (second < 0) fail(`no still of the second play: ${titles}`);
    await page.click(`#frames .frame >> nth=${second}`);
    if ((await picked()).line !== "7") fail("clicking the second play's still did not show line 7");
    await page.screenshot({ path: `${out}/studio-storyboard.png` });
    // A scene that fails as typed: the typed error and its line, as for a render.
    await setCode(page, scene("FadeOut(sq)").replace("Rotate(sq, PI / 4)", "Rotate(sq, 1 / 0)"));
    await page.waitForSelector("#error", { state: "visible", timeout: 120000 });
    await page.waitForSelector(".cm-errorLine", { timeout: 10000 }).catch(() => null);
    const line = ((await markedLine(page, "cm-errorLine")) || {}).line;
    await page.screenshot({ path: `${out}/studio-storyboard-error.png` });
    if (line !== "7") fail(`the storyboard's error did not highlight line 7 (got ${line}): ${await page.textContent("#error")}`);
    storyboard = `${titles.length} stills, line 7 on click, error at line 7`;
  }
  clean();
  console.log(`ok: 3 marks (${shown.map((m) => m.title).join(" | ")}); seeked to ${at.toFixed(2)} s; only the last changed; storyboard ${storyboard}`);
} finally {
  await browser.close();
}
