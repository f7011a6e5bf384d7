// The runs page in a real browser (Debian chromium driven by playwright-core): the page asks for the
// token once, a run appears live while it goes, its delegation tree and its denial (with the rule) are
// shown, and model output that is HTML (`<img onerror>`, `<script>`) shows as text and runs nothing.
// Skipped with a notice when chromium is absent; under CI=true a missing chromium fails (.ci/run installs it).
// UPDATE_SCREENSHOT=1 rewrites docs/ui-runs.png (the README's picture).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { startMockModel, type MockModel, type MockRequestInfo, type MockReply } from './mock-model/server.js';
import { ROOT, mockEnv, tempDir, writeTree } from './helpers.js';
import { connectClient, startHttpServer, type HttpServer } from './http-helpers.js';

const CHROMIUM = '/usr/bin/chromium';
const TOKEN = 'browser-test-token-9876543210';
const XSS = `<img src=x onerror="window.__xss='img'"><script>window.__xss='script'</script>`;
const present = existsSync(CHROMIUM);
if (!present) {
  if (process.env.CI === 'true') throw new Error(`${CHROMIUM} is missing: CI must install chromium (apt-get install -y chromium)`);
  process.stderr.write(`SKIP e2e-ui-browser: ${CHROMIUM} not found (apt-get install -y chromium to run the browser test)\n`);
}

function planned(req: MockRequestInfo): MockReply {
  const who = /You are "([^"]+)"/.exec(req.system)?.[1] ?? '?';
  if (who === 'lead') {
    if (req.toolResults.length) return { text: XSS, usage: { input_tokens: 300, output_tokens: 40 } };
    // Slow enough that the run is seen while it goes.
    return { toolCalls: [{ name: 'agent__helper', arguments: { task: 'read the secret' } }], delayMs: 1500, usage: { input_tokens: 200, output_tokens: 20 } };
  }
  if (req.toolResults.length) return { text: 'could not read it', usage: { input_tokens: 150, output_tokens: 10 } };
  return { toolCalls: [{ name: 'read_file', arguments: { path: 'secret.txt' } }], usage: { input_tokens: 100, output_tokens: 15 } };
}

describe('runs page in a browser', { skip: !present && 'chromium not installed' }, () => {
  let mock: MockModel;
  let srv: HttpServer;
  let browser: Browser;

  before(async () => {
    mock = await startMockModel();
    mock.setHandler(planned);
    const ws = tempDir('dmcp-ui-browser-');
    writeTree(ws, {
      'agents/lead.yaml': `name: lead
description: Delegates the reading.
model: anthropic/claude-sonnet-4-5
agents: [helper]
tools:
  fs: {read: true}
`,
      'agents/helper.yaml': `name: helper
description: Reads files.
model: anthropic/claude-sonnet-4-5
permissions:
  allow: ["Read(./**)"]
  deny: ["Read(./secret.txt)"]
`,
      'secret.txt': 'nope',
    });
    const cfg = path.join(ws, 'mcp.json');
    writeFileSync(cfg, JSON.stringify({ delegate: { agentsDir: 'agents', audit: { previews: true } } }));
    srv = await startHttpServer({ args: ['--config', cfg, '--workspace', ws], env: mockEnv(mock.url, { DELEGATE_MCP_TOKEN: TOKEN }), cwd: ws });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
    });
  });
  after(async () => {
    await browser?.close();
    await srv?.stop();
    await mock?.close();
  });

  it('asks for the token once, shows a run live, its tree and denial, and renders HTML output as text', async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const urls: string[] = [];
    const authed: string[] = [];
    page.on('request', (r) => {
      urls.push(r.url());
      if (r.headers().authorization === `Bearer ${TOKEN}`) authed.push(new URL(r.url()).pathname);
    });
    const dialogs: string[] = [];
    page.on('dialog', (d) => {
      dialogs.push(d.message());
      void d.dismiss();
    });
    const cspErrors: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error') cspErrors.push(m.text());
    });

    await page.goto(`${srv.url}/ui`);
    await page.locator('#login').waitFor({ state: 'visible' });
    await page.fill('#token', TOKEN);
    await page.click('#login-form button[type=submit]');
    await page.locator('#app').waitFor({ state: 'visible' });
    await page.locator('#live.on').waitFor({ timeout: 10_000 });
    assert.equal(await page.evaluate(() => sessionStorage.getItem('delegate-mcp-token')), TOKEN);

    // Start a run through MCP; the page is not reloaded: the row must arrive over the live stream.
    const client = await connectClient(srv.url, 'legacy', TOKEN);
    const call = client.callTool({ name: 'lead', arguments: { task: 'find out' } });
    try {
      const leadRow = page.locator('#runs tbody tr', { hasText: 'lead' }).filter({ hasText: 'running' });
      await leadRow.first().waitFor({ timeout: 15_000 });
      // While it goes, the row carries the run's latest progress line (from the server's live runs).
      assert.match((await leadRow.first().locator('.progress').textContent()) ?? '', /^turn \d+ · \S/);
      const result = (await call).structuredContent as any;
      assert.equal(result.status, 'ok');
      const done = page.locator(`#runs tbody tr[data-run-id="${result.run_id}"]`).filter({ hasText: 'ok' });
      await done.waitFor({ timeout: 15_000 });
      await done.click();
    } finally {
      await client.close();
    }

    // Tree: lead with helper under it; the denial names its rule.
    await page.locator('#tree > li > ul > li', { hasText: 'helper' }).waitFor({ timeout: 10_000 });
    const denial = page.locator('#denials li.denial');
    await denial.first().waitFor();
    assert.equal(await denial.count(), 1);
    assert.match((await denial.first().textContent()) ?? '', /helper denied read_file · rule Read\(\.\/secret\.txt\)/);
    assert.ok((await page.locator('#timeline tbody tr[data-kind="model_call"]').count()) >= 4);

    // The model's HTML is text: visible literally, no element made from it, nothing executed.
    await page.locator('#output', { hasText: '<img src=x onerror=' }).waitFor({ timeout: 10_000 });
    assert.equal(await page.locator('#output').textContent(), XSS);
    assert.equal(await page.locator('#output img, #output script, body img').count(), 0);
    await page.waitForTimeout(300);
    assert.equal(await page.evaluate(() => (window as any).__xss), undefined);
    assert.deepEqual(dialogs, []);

    // The token went only in headers, never in a URL; every data request carried it.
    assert.ok(urls.length > 0);
    for (const u of urls) assert.ok(!u.includes(TOKEN), u);
    for (const p of ['/ui/api/runs', '/ui/api/stream', '/ui/api/run']) assert.ok(authed.includes(p), `${p} carried the token`);
    assert.deepEqual(cspErrors.filter((e) => /Content Security Policy/i.test(e)), [], 'the page itself needs nothing the CSP forbids');

    // The README's picture: refreshed only when asked, so a test run leaves the tree clean.
    const shot = await page.screenshot({ fullPage: true });
    assert.ok(shot.length > 10_000);
    if (process.env.UPDATE_SCREENSHOT === '1') writeFileSync(path.join(ROOT, 'docs', 'ui-runs.png'), shot);
    await page.close();
  });
});
