// Drives the studio's prompt box in Debian's Chromium against a server whose
// model is scripted (a first attempt that fails, then a fix): the stages
// show, the code streams into the editor, and the final video plays.
//
//   node studio_generate.mjs BASE_URL OUT_DIR
// PLAYWRIGHT_CORE names playwright-core's entry module.
import { pathToFileURL } from "node:url";

const { chromium } = await import(process.env.PLAYWRIGHT_CORE ? pathToFileURL(process.env.PLAYWRIGHT_CORE).href : "playwright-core");

const [base, out] = process.argv.slice(2);
const fail = (msg) => { console.error(`FAIL: ${msg}`); process.exit(1); };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  // Anything the page's CSP blocks fails the test: Chromium reports it on the
  // console, and the document fires securitypolicyviolation (collected by a
  // script Playwright injects, which the policy does not apply to).
  const violations = [];
  page.on("console", (m) => { if (/Content Security Policy/i.test(m.text())) violations.push(m.text()); });
  await page.exposeFunction("cspViolation", (v) => violations.push(v));
  await page.addInitScript(() => document.addEventListener("securitypolicyviolation",
    (e) => window.cspViolation(`${e.violatedDirective} blocked ${e.blockedURI || "inline"} at ${e.sourceFile}:${e.lineNumber}`)));
  const response = await page.goto(base + "/");
  const csp = response.headers()["content-security-policy"] || "";
  if (!csp.includes("default-src 'self'") || csp.includes("unsafe-inline")) fail(`the page's CSP is not strict: ${csp}`);
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
  const code = await page.inputValue("#code");
  if (!code.startsWith("from manim import *") || !code.includes("self.play(Create(Circle()), run_time=1)") || code.includes("```"))
    fail(`the generated code is not in the editor: ${code}`);
  if (![...statuses].some((s) => s.startsWith("attempt 2: repairing"))) fail(`no repair stage shown: ${[...statuses].join(" | ")}`);
  await page.waitForFunction(() => document.getElementById("player").currentTime > 0, null, { timeout: 30000 });
  if (errors.length) fail(`page errors: ${errors.join("; ")}`);
  if (violations.length) fail(`CSP violations: ${violations.join("; ")}`);
  console.log(`ok: generated, repaired and played; stages: ${[...statuses].join(" | ")}`);
} finally {
  await browser.close();
}
