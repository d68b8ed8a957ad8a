// Drives the Tether web console in headless Chromium (tests/tests/console.rs runs it):
// log in with an analyst key, find the planted flag, resolve it with a note, find the
// audit entry, and save screenshots for a person to look at.
//
// Environment: CONSOLE_URL, ANALYST_KEY, FLAG_ID, FLAG_KIND, DEVICE_ID, NOTE,
// SCREENSHOT_DIR, and optionally CHROMIUM (default /usr/bin/chromium).
import { chromium } from 'playwright-core';
import path from 'node:path';
import fs from 'node:fs';

const need = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const base = need('CONSOLE_URL');
const key = need('ANALYST_KEY');
const flagId = need('FLAG_ID');
const flagKind = need('FLAG_KIND');
const deviceId = need('DEVICE_ID');
const note = need('NOTE');
const shots = need('SCREENSHOT_DIR');
fs.mkdirSync(shots, { recursive: true });

const check = (ok, what) => {
  if (!ok) throw new Error(`check failed: ${what}`);
  console.log(`ok: ${what}`);
};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  // Containers often run as root, where Chromium's sandbox cannot start.
  args: ['--no-sandbox'],
});
const violations = [];
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  page.on('console', (m) => {
    if (/Content.Security.Policy|Refused to/i.test(m.text())) violations.push(m.text());
  });
  page.on('pageerror', (e) => violations.push(String(e)));
  const shot = async (name) => {
    const file = path.join(shots, `console-${name}.png`);
    await page.screenshot({ path: file, fullPage: true });
    console.log(`screenshot: ${file}`);
  };

  // Without a session every page leads to the login form.
  await page.goto(`${base}/flags`);
  check(new URL(page.url()).pathname === '/login', 'an unauthenticated visit lands on /login');
  await shot('login');

  await page.fill('#api_key', key);
  await Promise.all([page.waitForURL(`${base}/farms`), page.click('form.login button[type=submit]')]);
  check(await page.locator('h1', { hasText: 'Farms' }).isVisible(), 'logged in: the farm view is the first page');
  await page.locator('nav a', { hasText: 'Flags' }).click();
  await page.waitForURL(`${base}/flags`);
  check(await page.locator('h1', { hasText: 'Flags' }).isVisible(), 'the flags page is in the navigation');

  const form = `form[action="/flags/${flagId}/review"]`;
  const row = page.locator('tr', { has: page.locator(form) });
  check((await row.count()) === 1, `the planted flag ${flagId} is listed`);
  const rowText = await row.innerText();
  check(rowText.includes(flagKind) && rowText.includes('open'), `its row shows kind ${flagKind} and status open`);
  await shot('flags');

  await row.locator(`${form} input[name=note]`).fill(note);
  await Promise.all([
    page.waitForURL(`${base}/flags`),
    row.locator(`${form} button[value=resolved]`).click(),
  ]);
  check((await page.locator(form).count()) === 0, 'the resolved flag left the unresolved list');

  await page.goto(`${base}/flags?status=resolved`);
  const resolved = page.locator('tr', { has: page.locator(form) });
  check((await resolved.count()) === 1 && (await resolved.innerText()).includes(note), 'it is listed as resolved with the note');
  await shot('flags-resolved');

  await page.goto(`${base}/audit`);
  const entry = page.locator('tr', { hasText: 'flag.resolved' }).filter({ hasText: flagId });
  check((await entry.count()) === 1, 'the audit log has the flag.resolved entry');
  check((await entry.innerText()).includes(note), 'the audit entry carries the note');
  check(await page.locator('p.ok').isVisible(), 'the shown audit entries form an intact chain');
  await shot('audit');

  await page.goto(`${base}/devices/${deviceId}`);
  check((await page.locator('td', { hasText: 'flag' }).count()) >= 1, 'the device timeline shows the flag');
  await shot('device');
  await page.goto(`${base}/presence?range=48h`);
  check(await page.locator('svg.chart').isVisible(), 'the presence chart renders');
  await shot('presence');
  await page.goto(`${base}/clusters`);
  await shot('clusters');

  await Promise.all([page.waitForURL(`${base}/login`), page.click('form.logout button')]);
  await page.goto(`${base}/flags`);
  check(new URL(page.url()).pathname === '/login', 'after logout the session is gone');
  check(violations.length === 0, `no Content-Security-Policy violations or script errors (${violations.join('; ')})`);
} finally {
  await browser.close();
}
console.log('console e2e: all checks passed');
