// What the studio's Chromium scripts share: Debian's Chromium through
// playwright-core, the studio opened with its strict CSP checked, and every
// CSP violation or page error collected so that a script can fail on them.
// PLAYWRIGHT_CORE names playwright-core's entry module (setup installs it
// under the runtime directory, outside this checkout).
import { pathToFileURL } from "node:url";

// playwright-core 1.65 needs Node 20 or newer: the Rust tests run the setup's
// pinned Node ($MANIMD_RUNTIME/web/bin/node), never the machine's own.
if (Number(process.versions.node.split(".")[0]) < 20) {
  console.error(`FAIL: Node ${process.version} is too old for playwright-core: run the setup's $MANIMD_RUNTIME/web/bin/node`);
  process.exit(1);
}
const { chromium } = await import(process.env.PLAYWRIGHT_CORE ? pathToFileURL(process.env.PLAYWRIGHT_CORE).href : "playwright-core");

export const fail = (msg) => { console.error(`FAIL: ${msg}`); process.exit(1); };

// Opens the studio at base; returns the browser, the page and `clean()`,
// which fails the script on any page error or CSP violation seen so far.
export async function openStudio(base) {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required"],
  });
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
  await defineLineText(page);
  const response = await page.goto(base + "/");
  const csp = response.headers()["content-security-policy"] || "";
  if (!csp.includes("default-src 'self'") || csp.includes("unsafe-inline")) fail(`the page's CSP is not strict: ${csp}`);
  const clean = () => {
    if (errors.length) fail(`page errors: ${errors.join("; ")}`);
    if (violations.length) fail(`CSP violations: ${violations.join("; ")}`);
  };
  return { browser, page, clean };
}

// The editor (CodeMirror, bundled by the setup), read and written as a
// person would: replacing the code is select-all and a paste-like insert,
// and the code is read back from the lines on screen (the scripts' scenes
// are short enough to be drawn whole), without the notes drawn beside them.
export async function setCode(page, text) {
  await page.click(".cm-content");
  await page.keyboard.press("Control+A");
  // Emptied first: Chromium's own editing would style what it replaces
  // across lines with an inline style, which the page's CSP refuses.
  await page.keyboard.press("Delete");
  if (text) await page.keyboard.insertText(text);
}
export const getCode = (page) => page.$$eval(".cm-content .cm-line", (lines) => lines.map((l) => window.lineText(l)).join("\n"));
// The line the editor marks with `className` (cm-errorLine, cm-pickedLine):
// its number as marked, its place among the lines drawn, its text and the
// note at its end; null when none is marked.
export const markedLine = (page, className) => page.evaluate((cls) => {
  const lines = [...document.querySelectorAll(".cm-content .cm-line")];
  const at = lines.findIndex((l) => l.classList.contains(cls));
  if (at < 0) return null;
  const note = lines[at].querySelector(".cm-errorMessage");
  return { line: lines[at].dataset.line, index: at + 1, text: window.lineText(lines[at]), note: note && note.textContent };
}, className);
// Defined in the page for the two readers above.
export async function defineLineText(page) {
  await page.addInitScript(() => {
    window.lineText = (line) => {
      const copy = line.cloneNode(true);
      for (const note of copy.querySelectorAll(".cm-errorMessage, .cm-widgetBuffer")) note.remove();
      return copy.textContent;
    };
  });
}
