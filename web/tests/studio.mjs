// Drives the studio in Debian's Chromium as a person would: render a scene
// and watch it play before the render ends, then submit a broken scene and
// see its failing line highlighted. The page's CSP allows no inline script or
// style, and any violation of it fails the run. Screenshots go to OUT_DIR.
//
//   node studio.mjs BASE_URL OUT_DIR
import { fail, markedLine, openStudio, setCode } from "./chromium.mjs";

const [base, out] = process.argv.slice(2);
const { browser, page, clean } = await openStudio(base);
try {
  await page.waitForSelector(".cm-editor .cm-content");
  // The styles and the script came from their files: the title has the
  // accent colour, the error box is hidden, and the editor is highlighted.
  const looks = await page.evaluate(() => ({
    title: getComputedStyle(document.querySelector("header h1")).color,
    error: getComputedStyle(document.getElementById("error")).display,
    lines: document.querySelectorAll(".cm-content .cm-line").length,
    keywords: document.querySelectorAll(".cm-content .tok-keyword").length,
  }));
  if (looks.title !== "rgb(88, 196, 221)" || looks.error !== "none") fail(`the styles did not apply: ${JSON.stringify(looks)}`);
  if (looks.lines < 5 || looks.keywords < 3) fail(`the script did not run: ${JSON.stringify(looks)}`);
  await page.screenshot({ path: `${out}/studio-loaded.png` });

  // A scene long enough to be watched while it renders.
  const scene = [`# ${Date.now()}`, "from manim import *", "import time", "", "class Long(Scene):", "    def construct(self):", "        sq = Square(color=BLUE)"];
  for (let i = 0; i < 12; i++) scene.push("        self.play(sq.animate.rotate(PI / 6), run_time=0.5)", "        time.sleep(0.3)");
  await setCode(page, scene.join("\n"));
  await page.click("#render");
  // Progress shows, and the video plays before the job has finished.
  await page.waitForFunction(() => /animation|frames/.test(document.getElementById("status").textContent), null, { timeout: 60000 });
  // The status line says "done" only once the job has ended.
  const watched = await page.waitForFunction(() => {
    const v = document.getElementById("player");
    const ended = document.getElementById("status").textContent.startsWith("done");
    return !ended && v.currentTime > 0 ? v.currentTime : false;
  }, null, { timeout: 60000, polling: 50 }).then((h) => h.jsonValue()).catch(() => null);
  await page.screenshot({ path: `${out}/studio-playing-live.png` });
  if (!watched) fail("the video did not advance before the job finished");
  await page.waitForFunction(() => document.getElementById("status").textContent.startsWith("done"), null, { timeout: 120000 });
  await page.screenshot({ path: `${out}/studio-done.png` });

  // A broken scene: the typed error shows and its line is highlighted.
  await setCode(page, "from manim import *\n\nclass Broken(Scene):\n    def construct(self):\n        self.play(Create(Circle()), run_time=0.2)\n        x = 1 / 0\n# " + Date.now());
  await page.click("#render");
  await page.waitForSelector("#error", { state: "visible", timeout: 60000 });
  const error = await page.textContent("#error");
  if (!error.includes("scene-error")) fail(`unexpected error text: ${error}`);
  await page.waitForSelector(".cm-errorLine", { timeout: 10000 }).catch(() => null);
  const line = ((await markedLine(page, "cm-errorLine")) || {}).line;
  await page.screenshot({ path: `${out}/studio-error.png` });
  if (line !== "6") fail(`the failing line was not highlighted (got ${line})`);

  // Narration: the line is spoken into the video and shown as a subtitle track.
  await page.check("#narration");
  await setCode(page, "from manim import *\n\nclass Said(Scene):\n    def construct(self):\n        narrate(\"A circle appears.\")\n        self.play(Create(Circle()), run_time=0.3)\n# " + Date.now());
  await page.click("#render");
  await page.waitForFunction(() => document.getElementById("status").textContent.startsWith("done"), null, { timeout: 120000 });
  const cue = await page.waitForFunction(() => {
    const t = document.getElementById("player").textTracks[0];
    return t && t.cues && t.cues.length ? t.cues[0].text : null;
  }, null, { timeout: 30000 }).then((h) => h.jsonValue()).catch(() => null);
  await page.screenshot({ path: `${out}/studio-narrated.png` });
  if (cue !== "A circle appears.") fail(`no subtitle cue for the narration (got ${cue})`);
  await page.uncheck("#narration");

  // The page works on a phone-sized screen.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.screenshot({ path: `${out}/studio-phone.png`, fullPage: true });
  clean();
  console.log(`ok: video advanced to ${watched.toFixed(2)} s while rendering; line ${line} highlighted; subtitle "${cue}"`);
} finally {
  await browser.close();
}
