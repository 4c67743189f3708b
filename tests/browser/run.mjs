#!/usr/bin/env node
// End-to-end test of the built-in web client in headless Chromium.
//
//   AGENTGATE_URL=http://127.0.0.1:4444 node run.mjs
//
// Env:
//   AGENTGATE_URL    the gateway (serving the page at `/`). Without it, a gateway is started from
//                    AGENTGATE_BIN (default: the newer of target/release/agentgate and
//                    target/debug/agentgate) on a free port with a temporary data dir.
//   DEV_PROXY=1      with a started gateway: put dev-proxy.mjs in front (serves web/ and
//                    /auth/dev-login), for gateways that do not serve the page yet.
//   AGENTGATE_TOKEN  sign in by pasting this token when the page offers no dev sign-in.
//   EXPECT_DEPLOY=1  require a deploy link and check the preview page works.
//   SCREENSHOT_DIR   where screenshots go (default ../../target/browser-screenshots).
//   CHROMIUM         the browser binary (default /usr/bin/chromium).
//   HEADFUL=1        show the browser (needs a display).

import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { defaultBinary, startDevProxy, startGateway } from './dev-proxy.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const SCREENSHOT_DIR = path.resolve(here, process.env.SCREENSHOT_DIR || '../../target/browser-screenshots');
const EXPECT_DEPLOY = process.env.EXPECT_DEPLOY === '1';
const RUN_TIMEOUT = 120_000;

const results = [];
let page;
let shotIndex = 0;

function log(line) {
  process.stdout.write(`${line}\n`);
}

async function screenshot(name, target = page) {
  if (!target) return;
  const file = path.join(SCREENSHOT_DIR, `${String(++shotIndex).padStart(2, '0')}-${name}.png`);
  try {
    await target.screenshot({ path: file, fullPage: false });
    log(`    📸 ${path.relative(process.cwd(), file)}`);
  } catch (e) {
    log(`    (screenshot ${name} failed: ${e.message})`);
  }
}

class Failure extends Error {}

function expect(condition, message) {
  if (!condition) throw new Failure(message);
}

function sameList(a, b) {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** Runs one step; the first failure stops the test (later steps depend on earlier ones). */
async function step(name, fn) {
  const started = Date.now();
  try {
    await fn();
    results.push({ name, ok: true });
    log(`✓ ${name} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
  } catch (e) {
    results.push({ name, ok: false, error: e });
    log(`✗ ${name}\n    ${e instanceof Failure ? e.message : e.stack || e}`);
    await screenshot(`FAILED-${name.replace(/[^a-z0-9]+/gi, '-').toLowerCase()}`);
    throw e;
  }
}

/** Ids of all events of a run, read straight from the gateway (replay of a finished run). */
async function serverSeqs(base, token, runId) {
  const res = await fetch(`${base}/runs/${runId}/events`, {
    headers: { Authorization: `Bearer ${token}`, 'Last-Event-ID': '0', Accept: 'text/event-stream' },
    signal: AbortSignal.timeout(30_000),
  });
  expect(res.ok, `GET /runs/${runId}/events answered ${res.status}`);
  const text = await res.text();
  const ids = [];
  let events = [];
  for (const block of text.split(/\r?\n\r?\n/)) {
    const id = block.match(/^id: ?(\d+)$/m)?.[1];
    const event = block.match(/^event: ?(.+)$/m)?.[1] || 'message';
    if (id && /^data:/m.test(block)) {
      ids.push(Number(id));
      events.push(event);
    }
  }
  expect(events.at(-1) === 'done', `the server's log of run ${runId} does not end with done`);
  return ids;
}

async function waitForCount(locator, n, timeout = RUN_TIMEOUT) {
  const deadline = Date.now() + timeout;
  while (Date.now() < deadline) {
    if ((await locator.count()) >= n) return;
    await page.waitForTimeout(100);
  }
  throw new Failure(`timed out waiting for ${n} × ${locator}`);
}

async function main() {
  mkdirSync(SCREENSHOT_DIR, { recursive: true });
  // Screenshots of an earlier run would mix with this one's.
  for (const name of readdirSync(SCREENSHOT_DIR)) {
    if (/^\d\d-.*\.png$/.test(name)) rmSync(path.join(SCREENSHOT_DIR, name));
  }
  let base = process.env.AGENTGATE_URL?.replace(/\/$/, '');
  const cleanups = [];
  if (!base) {
    const bin = process.env.AGENTGATE_BIN || defaultBinary();
    if (process.env.DEV_PROXY === '1') {
      const proxy = await startDevProxy({ bin });
      cleanups.push(() => proxy.stop());
      base = proxy.url;
      log(`started a gateway (${bin}) behind the dev proxy at ${base}`);
    } else {
      const gateway = await startGateway({ bin });
      cleanups.push(() => gateway.stop());
      base = gateway.url;
      log(`started a gateway (${bin}) at ${base}`);
    }
  }
  log(`testing ${base}; screenshots in ${SCREENSHOT_DIR}; EXPECT_DEPLOY=${EXPECT_DEPLOY ? 1 : 0}`);

  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: process.env.HEADFUL !== '1',
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ].filter((a) => a !== '--headless' || process.env.HEADFUL !== '1'),
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 820 }, acceptDownloads: true });
  page = await context.newPage();
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(e.message));
  page.on('console', (m) => {
    if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) pageErrors.push(m.text());
  });
  const resumeRequests = [];
  page.on('request', (r) => {
    if (/\/runs\/[^/]+\/events/.test(r.url())) resumeRequests.push({ url: r.url(), lastEventId: r.headers()['last-event-id'] });
  });

  const user = `e2e-${randomBytes(4).toString('hex')}`;
  let token;
  let appId;
  let secondRunId;

  try {
    await step('the page loads and shows the sign-in screen', async () => {
      const res = await page.goto(`${base}/`, { waitUntil: 'domcontentloaded' });
      expect(res && res.ok(), `GET / answered ${res?.status()}`);
      expect(/text\/html/.test(res.headers()['content-type'] || ''), `GET / is ${res.headers()['content-type']}, not HTML`);
      await page.getByTestId('signin').waitFor({ state: 'visible', timeout: 15_000 });
      await page.waitForTimeout(300); // the dev sign-in probe
      await screenshot('signin');
    });

    await step(`sign in (dev sign-in as ${user}, or a pasted token)`, async () => {
      const dev = page.getByTestId('dev-login-form');
      if (await dev.isVisible()) {
        await page.getByTestId('dev-user').fill(user);
        await page.getByTestId('dev-login').click();
      } else {
        expect(process.env.AGENTGATE_TOKEN, 'the page offers no dev sign-in (GET /auth/dev-login) and AGENTGATE_TOKEN is not set');
        await page.getByTestId('token-input').fill(process.env.AGENTGATE_TOKEN);
        await page.getByTestId('token-login').click();
      }
      await page.getByTestId('new-app').waitFor({ state: 'visible', timeout: 15_000 });
      await page.getByTestId('limit').filter({ hasText: /messages left today/ }).waitFor({ timeout: 10_000 });
      token = await page.evaluate(() => localStorage.getItem('agentgate.token'));
      expect(token, 'no token stored after sign-in');
      await page.getByTestId('empty-state').waitFor({ timeout: 5000 });
      await screenshot('signed-in-empty');
    });

    await step('type "build a todo list", send with Enter, watch progress', async () => {
      const prompt = page.getByTestId('prompt');
      await prompt.click();
      await page.keyboard.type('build a todo list');
      await page.keyboard.press('Enter');
      await page.getByTestId('running').waitFor({ state: 'visible', timeout: 10_000 });
      await page.getByTestId('user-message').filter({ hasText: 'build a todo list' }).waitFor();
      await page.locator('[data-testid="event"][data-kind="WipUpdate"][data-source="live"]').first().waitFor({ timeout: 30_000 });
      expect((await prompt.inputValue()) === '', 'the prompt was not cleared after sending');
      await screenshot('first-run-progress');
    });

    await step('the first run ends with version_created and done', async () => {
      await page.locator('[data-kind="done"][data-source="live"]').first().waitFor({ timeout: RUN_TIMEOUT });
      await page.locator('[data-kind="PlatformMessage"][data-type="version_created"]').first().waitFor({ timeout: 1000 });
      await page.getByTestId('running').waitFor({ state: 'hidden', timeout: 5000 });
      appId = await page.evaluate(() => window.__agentgateTest.currentAppId());
      expect(appId, 'the new app id (X-App-Id) was not adopted');
      expect(page.url().includes(`#/apps/${appId}`), `the URL does not name the new app: ${page.url()}`);
      await page.locator(`[data-testid="app-item"][data-app-id="${appId}"]`).waitFor({ timeout: 10_000 });
      const limit = await page.getByTestId('limit').getAttribute('data-remaining');
      const max = await page.getByTestId('limit').getAttribute('data-limit');
      expect(Number(limit) === Number(max) - 1, `limit display says ${limit} of ${max} left after one message`);
      const errors = await page.locator('[data-kind="error"], [data-testid="error"]').count();
      expect(errors === 0, `the first run shows ${errors} error(s)`);
      await screenshot('first-run-done');
    });

    const deployLink = page.getByTestId('deploy-link').first();
    if (EXPECT_DEPLOY || (await deployLink.count()) > 0) {
      await step('the deploy link opens a working preview', async () => {
        await deployLink.waitFor({ timeout: 5000 });
        const href = await deployLink.getAttribute('href');
        expect(href, 'the deploy link has no href');
        const preview = await context.newPage();
        const res = await preview.goto(new URL(href, base).href);
        expect(res && res.ok(), `the preview answered ${res?.status()}`);
        const h1 = (await preview.locator('h1').first().textContent({ timeout: 10_000 }))?.trim();
        expect(h1, 'the preview has no <h1>');
        const input = preview.locator('input[type="text"], input:not([type])').first();
        await input.fill('buy milk');
        await input.press('Enter');
        await preview.locator('li', { hasText: 'buy milk' }).first().waitFor({ timeout: 5000 });
        await screenshot('preview', preview);
        await preview.close();
      });
    } else {
      log('- no deploy link (EXPECT_DEPLOY is not 1): preview not checked');
    }

    if (EXPECT_DEPLOY) {
      await step('the deployment log shows its lines under the app header', async () => {
        const panel = page.locator('[data-testid="app-header"] [data-testid="deploy-log"]');
        await panel.waitFor({ timeout: 10_000 });
        await panel.locator('summary').click();
        await page.locator('[data-testid="app-header"] [data-testid="deploy-log"][data-status="healthy"]').waitFor({ timeout: 15_000 });
        const lines = panel.locator('[data-testid="deploy-log-line"]');
        await lines.filter({ hasText: 'site published at' }).first().waitFor({ timeout: 5000 });
        const texts = await lines.allTextContents();
        expect(texts.some((t) => t.includes('queued: version 1')), `no queued line in the log: ${texts.join(' | ')}`);
        expect(texts.some((t) => t.includes('healthy: ')), `no healthy line in the log: ${texts.join(' | ')}`);
        const seqs = await lines.evaluateAll((els) => els.map((el) => Number(el.dataset.seq)));
        expect(seqs.every((seq, i) => seq === i + 1), `log lines out of order or repeated: ${seqs}`);
        expect((await panel.locator('[data-failed="true"]').count()) === 0, 'a healthy deployment has a failed line');
        await screenshot('deployment-log');
      });
    }

    await step('follow-up "add a dark mode" survives dropped connections without duplicates', async () => {
      // Slow the demo agent down so the run is still going when we cut it.
      await page.evaluate(() => window.__agentgateTest.setSettings({ demo: { eventDelayMs: 700 } }));
      await page.getByTestId('prompt').click();
      await page.keyboard.type('add a dark mode');
      await page.keyboard.press('Control+Enter');
      await page.getByTestId('running').waitFor({ state: 'visible', timeout: 10_000 });
      await page.waitForFunction(() => window.__agentgateTest.currentRunId(), null, { timeout: 15_000 });
      secondRunId = await page.evaluate(() => window.__agentgateTest.currentRunId());
      const live = page.locator(`section[data-run-id="${secondRunId}"] [data-seq]`);

      // 1) a plain drop: the stream breaks, the page resumes at once.
      await waitForCount(live, 2, 30_000);
      const dropped = await page.evaluate(() => window.__agentgateTest.dropStream());
      expect(dropped, 'dropStream() found no open stream');

      // 2) offline for a while: resuming fails until the network is back.
      await waitForCount(live, 4, 30_000);
      await context.setOffline(true);
      await page.evaluate(() => window.__agentgateTest.dropStream());
      await page.locator('[data-testid="running"].reconnecting').waitFor({ timeout: 5000 });
      await screenshot('reconnecting');
      await page.waitForTimeout(1500);
      await context.setOffline(false);

      await page.locator(`section[data-run-id="${secondRunId}"] [data-kind="done"]`).waitFor({ timeout: RUN_TIMEOUT });
      await page.getByTestId('running').waitFor({ state: 'hidden', timeout: 5000 });
      const resumed = resumeRequests.filter((r) => r.url.includes(secondRunId));
      expect(resumed.length >= 2, `expected at least 2 resume requests, saw ${resumed.length}`);
      expect(resumed.every((r) => Number(r.lastEventId) >= 1), `a resume did not send Last-Event-ID: ${JSON.stringify(resumed)}`);

      const shown = await page.evaluate((id) => window.__agentgateTest.seqs(id), secondRunId);
      const onServer = await serverSeqs(base, token, secondRunId);
      expect(new Set(shown).size === shown.length, `an event is shown twice: ${shown.join(',')}`);
      expect(sameList(shown, onServer), `shown seqs [${shown.join(',')}] differ from the server's [${onServer.join(',')}]`);
      log(`    run ${secondRunId}: ${shown.length} events, each shown once; ${resumed.length} resume(s)`);
      const dark = page.locator(`section[data-run-id="${secondRunId}"] [data-kind="PlatformMessage"][data-type="version_created"]`);
      expect((await dark.count()) === 1, 'the follow-up did not save a new version');
      await page.evaluate(() => window.__agentgateTest.setSettings(null));
      await screenshot('resumed-run-done');
    });

    await step('Files tab: tree, code view of index.html, versions', async () => {
      await page.getByTestId('tab-files').click();
      const item = page.locator('[data-testid="file-item"][data-path="index.html"]');
      await item.waitFor({ timeout: 15_000 });
      await item.click();
      const code = page.locator('[data-testid="code-view"][data-path="index.html"]');
      await code.waitFor({ timeout: 10_000 });
      const text = await code.innerText();
      expect(/<h1/i.test(text) && /<html/i.test(text), 'the code view of index.html does not show its HTML');
      expect(Number(await code.getAttribute('data-lines')) > 5, 'the code view has too few lines');
      expect(/v2/.test(await page.getByTestId('files-summary').innerText()), 'the files tab does not show version 2');
      await screenshot('files-index-html');

      const versions = await page.getByTestId('version-select').locator('option').allInnerTexts();
      expect(versions.some((v) => v === 'v1'), `no older version offered: ${versions.join(', ')}`);
      await page.getByTestId('version-select').selectOption('1');
      await page.getByTestId('files-summary').filter({ hasText: /^v1 / }).waitFor({ timeout: 10_000 });
      await page.locator('[data-testid="code-view"][data-path="index.html"]').waitFor({ timeout: 10_000 });
      await screenshot('files-version-1');
      await page.getByTestId('version-select').selectOption('');
      await page.getByTestId('files-summary').filter({ hasText: /^v2 / }).waitFor({ timeout: 10_000 });
      expect(await page.getByTestId('download-archive').getAttribute('href'), 'no archive download link');
    });

    await step('download index.html through its link; sha256 matches the listing', async () => {
      await page.locator('[data-testid="file-item"][data-path="index.html"]').click();
      const listed = await page.locator('[data-testid="file-item"][data-path="index.html"]').getAttribute('data-sha256');
      const [download] = await Promise.all([
        page.waitForEvent('download', { timeout: 15_000 }),
        page.locator('[data-testid="download-file"][data-path="index.html"]').click(),
      ]);
      const saved = await download.path();
      expect(saved, `the download failed: ${await download.failure()}`);
      const sha = createHash('sha256').update(readFileSync(saved)).digest('hex');
      expect(sha === listed, `downloaded sha256 ${sha} ≠ listed ${listed}`);
      // The same link works outside the page too, with no auth header.
      const href = await page.locator('[data-testid="download-file"][data-path="index.html"]').getAttribute('href');
      const res = await fetch(new URL(href, base));
      expect(res.ok, `GET ${href} answered ${res.status}`);
      const direct = createHash('sha256').update(Buffer.from(await res.arrayBuffer())).digest('hex');
      expect(direct === listed, `sha256 via direct GET ${direct} ≠ listed ${listed}`);
    });

    await step('Files tab, Changes: the versions list and the follow-up\'s dark mode in its diff', async () => {
      await page.getByTestId('files-mode-changes').click();
      const items = page.getByTestId('version-item');
      await waitForCount(items, 2, 15_000);
      const listed = await items.evaluateAll((els) => els.map((e) => Number(e.dataset.version)));
      expect(sameList(listed, [2, 1]), `versions listed as [${listed.join(',')}], not newest first [2,1]`);
      expect(/Add dark mode/.test(await items.first().innerText()), `v2 is not labelled with its commit message: ${await items.first().innerText()}`);
      // The newest version is selected: its diff against v1 holds the dark mode change.
      const diff = page.locator('[data-testid="diff-view"][data-from="1"][data-to="2"]');
      await diff.waitFor({ timeout: 10_000 });
      const files = await diff.getByTestId('diff-file').allInnerTexts();
      expect(files.includes('diff --git a/styles.css b/styles.css'), `the diff of v2 does not show styles.css: ${files.join(' | ')}`);
      const added = await diff.locator('.line.add').allInnerTexts();
      expect(added.some((l) => l.includes('[data-theme="dark"]')), 'the diff of v2 does not show the dark theme rule as added');
      expect(added.some((l) => l.includes('Dark mode')), 'the diff of v2 does not show the dark mode script as added');
      expect((await diff.locator('.line.del').count()) < added.length, 'dark mode should add more than it removes');
      const counts = await items.first().getByTestId('change-counts').innerText();
      expect(/~\s*[1-9]/.test(counts), `v2's change counts show no modified file: ${counts}`);
      await screenshot('files-changes-v2');

      // v1 against the empty tree: every file added, index.html among them.
      await items.nth(1).click();
      const first = page.locator('[data-testid="diff-view"][data-from="0"][data-to="1"]');
      await first.waitFor({ timeout: 10_000 });
      const firstFiles = await first.getByTestId('diff-file').allInnerTexts();
      expect(firstFiles.includes('diff --git a/index.html b/index.html'), `the diff of v1 does not add index.html: ${firstFiles.join(' | ')}`);
      expect((await first.locator('.line.del').count()) === 0, 'the first version deletes lines');
      await screenshot('files-changes-v1');
      await page.getByTestId('files-mode-tree').click();
      await page.locator('[data-testid="file-item"][data-path="index.html"]').waitFor({ timeout: 5000 });
    });

    await step('Cancel stops a running run (run_cancelled, then done)', async () => {
      await page.getByTestId('tab-chat').click();
      await page.evaluate(() => window.__agentgateTest.setSettings({ demo: { eventDelayMs: 1500 } }));
      await page.getByTestId('prompt').fill('add a footer');
      await page.getByTestId('send').click();
      await page.getByTestId('cancel').waitFor({ state: 'visible', timeout: 10_000 });
      await page.waitForFunction(() => window.__agentgateTest.currentRunId(), null, { timeout: 15_000 });
      await page.waitForTimeout(500);
      await page.getByTestId('cancel').click();
      const runId = await page.evaluate(() => window.__agentgateTest.currentRunId());
      const section = page.locator(`section[data-run-id="${runId}"]`);
      await section.locator('[data-kind="error"]').filter({ hasText: /cancel/i }).waitFor({ timeout: 30_000 });
      await section.locator('[data-kind="done"]').waitFor({ timeout: 30_000 });
      await page.getByTestId('running').waitFor({ state: 'hidden', timeout: 5000 });
      await page.evaluate(() => window.__agentgateTest.setSettings(null));
      await screenshot('cancelled');
    });

    await step('after a reload the conversation comes back from history', async () => {
      await page.reload({ waitUntil: 'domcontentloaded' });
      await page.locator('[data-testid="user-message"]', { hasText: 'add a dark mode' }).waitFor({ timeout: 15_000 });
      const fromHistory = await page.locator('[data-source="history"]').count();
      expect(fromHistory >= 4, `only ${fromHistory} history items after a reload`);
      await page.locator('[data-source="history"][data-kind="PlatformMessage"][data-type="version_created"]').first().waitFor();
      // History rows are app.build's AppPrompts: agent replies keep their messageKind.
      await page.locator('[data-source="history"][data-kind="ReviewResult"]').first().waitFor();
      if (EXPECT_DEPLOY) {
        // deployStatus takes app.build's values; the badge reads it.
        await page.locator('[data-testid="app-header"] [data-testid="deploy-badge"][data-status="deployed"]').waitFor({ timeout: 10_000 });
      }
      await page.locator(`[data-testid="app-item"][data-app-id="${appId}"].active`).waitFor({ timeout: 10_000 });
      await screenshot('history-after-reload');
    });

    await step('an invalid token signs the user out with a clear message', async () => {
      await page.evaluate(() => localStorage.setItem('agentgate.token', 'not-a-valid-token'));
      await page.reload({ waitUntil: 'domcontentloaded' });
      await page.getByTestId('signin-message').filter({ hasText: /signed out/i }).waitFor({ timeout: 10_000 });
      expect(!(await page.evaluate(() => localStorage.getItem('agentgate.token'))), 'the bad token was kept');
      await screenshot('signed-out');
    });

    await step('no script errors on the page', async () => {
      expect(pageErrors.length === 0, `page errors:\n      ${pageErrors.join('\n      ')}`);
    });
  } catch {
    // Reported by step(); fall through to the summary.
  } finally {
    await browser.close().catch(() => {});
    for (const cleanup of cleanups) await cleanup().catch(() => {});
  }

  const passed = results.filter((r) => r.ok).length;
  const failed = results.length - passed;
  log('');
  log(`${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

main().catch((e) => {
  log(`✗ setup failed: ${e.stack || e}`);
  log('0 passed, 1 failed');
  process.exit(1);
});
