// The explorer's browser check, run by .ci/explorer.sh (see there):
//   node explorer-check.cjs --playwright DIR --url https://host:port/explorer --chromium PATH
//        --nodes node0@Org1,node0@Org2,... --screenshot target/explorer.png
// Exits non-zero (with the reason) on any failed check.
"use strict";

const path = require("path");

function arg(name) {
  const i = process.argv.indexOf("--" + name);
  if (i < 0 || i + 1 >= process.argv.length) throw new Error("missing --" + name);
  return process.argv[i + 1];
}

const { chromium } = require(path.join(arg("playwright"), "node_modules", "playwright-core"));

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

async function main() {
  const url = arg("url");
  const nodes = arg("nodes").split(",").filter(Boolean);
  const shot = arg("screenshot");
  const origin = new URL(url).origin;
  const browser = await chromium.launch({
    executablePath: arg("chromium"),
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
  try {
    // The network's TLS CA is local (and ed25519): ignore HTTPS errors in this context, which
    // only ever talks to the explorer's own origin (checked below).
    const context = await browser.newContext({
      ignoreHTTPSErrors: true,
      viewport: { width: 1400, height: 1000 },
    });
    const page = await context.newPage();
    const foreign = [];
    page.on("request", (r) => {
      if (new URL(r.url()).origin !== origin) foreign.push(r.url());
    });
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    const resp = await page.goto(url, { waitUntil: "load" });
    if (!resp || resp.status() !== 200) throw new Error("GET /explorer: " + (resp && resp.status()));

    // Every node listed, reachable, with a height.
    const rows = page.locator("#nodes tbody tr");
    const seen = await waitFor("every node listed and up", 30000, async () => {
      const n = await rows.count();
      const out = {};
      for (let i = 0; i < n; i++) {
        const r = rows.nth(i);
        const id = await r.getAttribute("data-node");
        const h = await r.getAttribute("data-height");
        const state = await r.locator("td").nth(8).innerText();
        out[id] = { height: h === "" ? null : Number(h), up: state.trim() === "up" };
      }
      return nodes.every((id) => out[id] && out[id].up && out[id].height !== null) ? out : null;
    });
    console.log("nodes listed:", JSON.stringify(seen));

    // The height rises while transactions are sent.
    const h0 = Number(await page.locator("#net-height").innerText());
    const h1 = await waitFor("height to rise", 30000, async () => {
      const h = Number(await page.locator("#net-height").innerText());
      return h >= h0 + 3 ? h : null;
    });
    console.log(`height rose from ${h0} to ${h1}`);
    for (const id of nodes) {
      await waitFor(`height of ${id} to rise`, 20000, async () => {
        const h = await page.locator(`#nodes tbody tr[data-node="${id}"]`).getAttribute("data-height");
        return h !== "" && Number(h) > h0 ? true : null;
      });
    }
    await waitFor("the charts to draw", 10000, async () => {
      const tps = await page.locator("#chart-tps polyline").count();
      const height = await page.locator("#chart-height polyline").count();
      return tps > 0 && height > 0 ? true : null;
    });

    // Open a block with transactions from the list: its txs with validation codes.
    const blockRow = page.locator("#blocks tbody tr").filter({ has: page.locator("td:nth-child(2)", { hasNotText: /^0$/ }) }).first();
    await blockRow.waitFor({ timeout: 10000 });
    const blockNum = await blockRow.getAttribute("data-block");
    await blockRow.locator("a").first().click();
    const txRows = page.locator(`#detail-txs[data-block="${blockNum}"] tbody tr`);
    await txRows.first().waitFor({ timeout: 10000 });
    const n = await txRows.count();
    const codes = [];
    for (let i = 0; i < n; i++) codes.push(await txRows.nth(i).getAttribute("data-code"));
    if (n === 0 || codes.some((c) => !c)) throw new Error(`block ${blockNum}: txs without codes`);
    const fn = await txRows.first().locator("td").nth(3).innerText();
    const contract = await txRows.first().locator("td").nth(2).innerText();
    if (contract !== "kv" || fn !== "put") throw new Error(`block ${blockNum}: tx shows ${contract}.${fn}`);
    console.log(`block ${blockNum}: ${n} tx(s), codes ${[...new Set(codes)].join(",")}`);
    await page.locator("#detail").screenshot({ path: shot.replace(/\.png$/, "-block.png") });

    // And a transaction's detail.
    await txRows.first().locator("a").click();
    await waitFor("tx detail", 10000, async () => {
      const t = await page.locator("#detail-kv").innerText();
      return t.includes("validation code") && t.includes("VALID") ? true : null;
    });

    // Back to a block view for the screenshot of the whole page.
    await page.goto(`${url}#/block/${blockNum}`);
    await txRows.first().waitFor({ timeout: 10000 });
    await sleep(3000);
    await page.screenshot({ path: shot, fullPage: true });
    console.log("screenshot:", shot);

    if (foreign.length) throw new Error("the page loaded from elsewhere: " + foreign.join(", "));
    if (errors.length) throw new Error("page errors: " + errors.join("; "));
  } finally {
    await browser.close();
  }
}

async function waitFor(what, ms, f) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    try {
      const v = await f();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    await sleep(250);
  }
  throw new Error(`timed out waiting for ${what}` + (last ? `: ${last.message}` : ""));
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error("explorer check FAILED:", e.message);
    process.exit(1);
  },
);
