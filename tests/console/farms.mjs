// The farm view in headless Chromium (tests/tests/console/browser.rs runs it after a
// live sweep): log in, land on /farms, find the farm of our laptops, check its answer
// timeline SVG (marks per row, the staircase order of the first marks), that the other
// employer's device, tenant and worker are nowhere on the page, that the strict CSP
// saw no violation, and save console-farms.png.
//
// Environment: CONSOLE_URL, ANALYST_KEY, OWN_DEVICES (comma-separated, in the order one
// hand answered them), ANSWERS_PER_DEVICE, FOREIGN (comma-separated strings that must
// not appear), SCREENSHOT_DIR, and optionally CHROMIUM (default /usr/bin/chromium).
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
const own = need('OWN_DEVICES').split(',');
const answers = Number(need('ANSWERS_PER_DEVICE'));
const foreign = need('FOREIGN').split(',');
const shots = need('SCREENSHOT_DIR');
fs.mkdirSync(shots, { recursive: true });

const check = (ok, what) => {
  if (!ok) throw new Error(`check failed: ${what}`);
  console.log(`ok: ${what}`);
};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox'],
});
const violations = [];
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  page.on('console', (m) => {
    if (/Content.Security.Policy|Refused to/i.test(m.text())) violations.push(m.text());
  });
  page.on('pageerror', (e) => violations.push(String(e)));
  // The browser's own report of anything the CSP blocked (registered before any page script could run).
  await page.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      console.error(`Content-Security-Policy violation: ${e.violatedDirective} ${e.blockedURI}`);
    });
  });

  await page.goto(`${base}/login`);
  await page.fill('#api_key', key);
  await Promise.all([page.waitForURL(`${base}/farms`), page.click('form.login button[type=submit]')]);
  check(await page.locator('h1', { hasText: 'Farms' }).isVisible(), 'logging in lands on the farm view');

  // The farm holding our laptops.
  const farm = page.locator('section.farm', { has: page.locator(`dd.members a[href="/devices/${own[0]}"]`) });
  check((await farm.count()) === 1, 'one farm lists our first laptop');
  check(await farm.locator('.sev', { hasText: 'farm suspected' }).isVisible(), 'it is a suspected farm');
  check((await farm.locator('ul.signals li', { hasText: 'presence_burst' }).count()) === 1, 'the signal that combined is named');
  for (const device of own) {
    check((await farm.locator(`dd.members a[href="/devices/${device}"]`).count()) === 1, `our laptop ${device} is named and linked`);
  }
  check(/^1 device of 1 other employer/.test(await farm.locator('dd.others').innerText()), 'the other employer\'s laptop is counted');

  // The day's timeline: one row per laptop, every answer drawn.
  const day = farm.locator('svg.timeline.day');
  check(await day.isVisible(), 'the day timeline renders');
  const rows = day.locator('g.row');
  check((await rows.count()) === own.length, `one row per laptop of ours (${own.length})`);
  const firsts = async (svg) => {
    const out = [];
    for (const row of await svg.locator('g.row').all()) {
      const xs = await row.locator('circle.answer').evaluateAll((cs) => cs.map((c) => Number(c.getAttribute('cx'))));
      const y = Number(await row.locator('circle.answer').first().getAttribute('cy'));
      out.push({ device: await row.getAttribute('data-device'), count: xs.length, x: Math.min(...xs), y });
    }
    return out;
  };
  const dayRows = await firsts(day);
  for (const r of dayRows) check(r.count === answers, `${r.device}: ${answers} answer marks in the day (${r.count})`);
  check(dayRows.map((r) => r.device).join() === own.join(), `rows in the order the laptops were answered (${dayRows.map((r) => r.device)})`);
  check(dayRows.every((r, i) => i === 0 || (r.x >= dayRows[i - 1].x && r.y > dayRows[i - 1].y)), 'the day view steps down and never left');
  check((await day.locator('circle.issued').count()) === own.length * answers, 'a hollow mark at each challenge\'s issue');

  // The close-up of the sweep: a strict staircase, seconds apart.
  const run = farm.locator('svg.timeline.run');
  check(await run.isVisible(), 'the close-up of the latest run renders');
  const runRows = await firsts(run);
  check(runRows.map((r) => r.device).join() === own.join(), 'the close-up has the same rows in the same order');
  check(runRows.every((r, i) => i === 0 || (r.x > runRows[i - 1].x + 5 && r.y > runRows[i - 1].y)), `a staircase: each row's first answer right of and below the one before (${runRows.map((r) => `${r.x},${r.y}`)})`);

  const html = await page.content();
  for (const secret of foreign) check(!html.includes(secret), `the page never shows ${secret}`);
  await page.locator('section.farm').first().scrollIntoViewIfNeeded();
  const file = path.join(shots, 'console-farms.png');
  await page.screenshot({ path: file, fullPage: true });
  console.log(`screenshot: ${file}`);

  await page.goto(`${base}/farms?day=not-a-day`);
  check((await page.locator('p.error', { hasText: 'YYYY-MM-DD' }).count()) === 1, 'a bad day is refused with the format');
  check(violations.length === 0, `no Content-Security-Policy violations or script errors (${violations.join('; ')})`);
} finally {
  await browser.close();
}
console.log('console farms e2e: all checks passed');
