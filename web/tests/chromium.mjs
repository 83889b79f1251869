// What the studio's Chromium scripts share: Debian's Chromium through
// playwright-core, the studio opened with its strict CSP checked, and every
// CSP violation or page error collected so that a script can fail on them.
// PLAYWRIGHT_CORE names playwright-core's entry module (setup installs it
// under the runtime directory, outside this checkout).
import { pathToFileURL } from "node:url";

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
  const response = await page.goto(base + "/");
  const csp = response.headers()["content-security-policy"] || "";
  if (!csp.includes("default-src 'self'") || csp.includes("unsafe-inline")) fail(`the page's CSP is not strict: ${csp}`);
  const clean = () => {
    if (errors.length) fail(`page errors: ${errors.join("; ")}`);
    if (violations.length) fail(`CSP violations: ${violations.join("; ")}`);
  };
  return { browser, page, clean };
}
