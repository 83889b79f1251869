// Drives the studio's prompt box in Debian's Chromium against a server whose
// model is scripted (a first attempt that fails, then a fix): the stages
// show, the code streams into the editor, and the final video plays.
//
//   node studio_generate.mjs BASE_URL OUT_DIR
import { fail, getCode, openStudio } from "./chromium.mjs";

const [base, out] = process.argv.slice(2);
const { browser, page, clean } = await openStudio(base);
try {
  // The prompt box appears because the server has a model.
  await page.waitForSelector("#prompt-text", { state: "visible", timeout: 30000 });
  await page.fill("#prompt-text", "draw a circle");
  const statuses = new Set();
  await page.exposeFunction("seen", (s) => statuses.add(s));
  await page.evaluate(() => new MutationObserver(() => window.seen(document.getElementById("status").textContent))
    .observe(document.getElementById("status"), { childList: true, characterData: true, subtree: true }));
  await page.click("#generate");
  await page.waitForFunction(() => document.getElementById("status").textContent.startsWith("done"), null, { timeout: 120000 });
  await page.screenshot({ path: `${out}/studio-generated.png` });
  const code = await getCode(page);
  if (!code.startsWith("from manim import *") || !code.includes("self.play(Create(Circle()), run_time=1)") || code.includes("```"))
    fail(`the generated code is not in the editor: ${code}`);
  if (![...statuses].some((s) => s.startsWith("attempt 2: repairing"))) fail(`no repair stage shown: ${[...statuses].join(" | ")}`);
  await page.waitForFunction(() => document.getElementById("player").currentTime > 0, null, { timeout: 30000 });
  clean();
  console.log(`ok: generated, repaired and played; stages: ${[...statuses].join(" | ")}`);
} finally {
  await browser.close();
}
