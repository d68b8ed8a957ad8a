// Drives the Tether worker web app in headless Chromium with the browser's own virtual
// authenticators (DevTools WebAuthn domain), for tests/tests/web_app.rs. What only an
// administrator or a gateway can do (trust the authenticator's attestation root, issue a
// challenge, ask for an access decision) is asked of the Rust test as `REQUEST {json}` lines
// on stdout, each answered by one JSON line on stdin.
//
// Environment: ORIGIN_A, ORIGIN_B, TOKEN, TOKEN_UV, TOKEN_EXPIRED, TOKEN_B, SCREENSHOT_DIR,
// and optionally CHROMIUM (default /usr/bin/chromium).
import { chromium } from 'playwright-core';
import path from 'node:path';
import fs from 'node:fs';
import readline from 'node:readline';

const need = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const originA = need('ORIGIN_A');
const originB = need('ORIGIN_B');
const shots = need('SCREENSHOT_DIR');
fs.mkdirSync(shots, { recursive: true });

const lines = readline.createInterface({ input: process.stdin });
const replies = lines[Symbol.asyncIterator]();
const ask = async (request) => {
  console.log(`REQUEST ${JSON.stringify(request)}`);
  const { value, done } = await replies.next();
  if (done) throw new Error('the test closed stdin');
  return JSON.parse(value);
};

const check = (ok, what, detail = '') => {
  if (!ok) throw new Error(`check failed: ${what} ${detail}`);
  console.log(`ok: ${what}`);
};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync',
    // A second tenant's origin on this machine; *.localhost is a secure context like localhost.
    '--host-resolver-rules=MAP *.localhost 127.0.0.1',
  ],
});
const violations = [];

// One "laptop": a browser profile with its own virtual authenticator.
const laptop = async (name, { uv = true, transport = 'usb' } = {}) => {
  const context = await browser.newContext({ viewport: { width: 1000, height: 720 } });
  await context.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) =>
      console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI}`));
  });
  const page = await context.newPage();
  page.on('console', (m) => {
    if (/Content.Security.Policy|Refused to|CSP violation/i.test(m.text())) violations.push(`${name}: ${m.text()}`);
  });
  page.on('pageerror', (e) => violations.push(`${name}: ${e}`));
  const posted = { finish: [], answer: [] };
  page.on('request', (r) => {
    if (r.method() !== 'POST') return;
    if (r.url().endsWith('/api/enroll/finish')) posted.finish.push(r.postData());
    if (r.url().endsWith('/api/presence/answer')) posted.answer.push(r.postData());
  });
  const cdp = await context.newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2', transport, hasResidentKey: true, hasUserVerification: true, isUserVerified: uv,
      automaticPresenceSimulation: true,
    },
  });
  return { name, context, page, cdp, authenticatorId, posted };
};

const status = (page) => page.evaluate(() => {
  const s = document.querySelector('#status');
  return { state: s.dataset.state, text: s.textContent };
});

// Clicks `button` and waits for #status to settle on one of `states`.
const clickAndSettle = async (page, button, states) => {
  await page.click(button);
  await page.waitForFunction((s) => s.includes(document.querySelector('#status').dataset.state), states,
    { timeout: 30000 });
  return status(page);
};

const enrollAt = async (l, origin, token) => {
  // A fresh load each time, as a worker opening the link would.
  await l.page.goto('about:blank');
  await l.page.goto(`${origin}/enroll#token=${encodeURIComponent(token)}`);
  await l.page.waitForFunction(() => location.hash === '' && document.querySelector('#token').value !== '');
  return clickAndSettle(l.page, '#enroll', ['enrolled', 'refused']);
};

// A POST as the page's script makes it, from inside the page.
const postFromPage = (page, url, body) => page.evaluate(async ({ url, body }) => {
  const csrf = document.querySelector('meta[name="tether-csrf"]').content;
  const r = await fetch(url, {
    method: 'POST', headers: { 'Content-Type': 'application/json', 'X-Tether-Csrf': csrf }, body,
  });
  return { status: r.status, reply: await r.json() };
}, { url, body });

// An assertion over the challenge's request options, made by this page's authenticator.
const signInPage = (page, optionsJson) => page.evaluate(async (json) => {
  const credential = await navigator.credentials.get({ publicKey: window.tether.requestOptions(JSON.parse(json)) });
  return JSON.stringify(window.tether.assertionJSON(credential));
}, optionsJson);

const shot = async (page, name) => {
  const file = path.join(shots, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  console.log(`screenshot: ${file}`);
};

try {
  // 1. Enrollment: refused while the virtual authenticator's batch root is untrusted, then
  //    trusted by the administrator and enrolled with the same (unconsumed) token.
  const one = await laptop('laptop-1');
  let result = await enrollAt(one, originA, need('TOKEN'));
  check(result.state === 'refused' && /not hardware-attested/.test(result.text),
    'an untrusted attestation root is refused under the default policy', result.text);
  const firstRegistration = JSON.parse(JSON.parse(one.posted.finish[0]).registration_response_json);
  const trusted = await ask({ action: 'trust', attestation_object: firstRegistration.response.attestationObject });
  console.log(`trusted ${trusted.subject}`);
  result = await clickAndSettle(one.page, '#enroll', ['enrolled', 'refused']);
  check(result.state === 'enrolled', 'enrolled once the root is a trust anchor', result.text);
  await shot(one.page, 'web-enroll');
  const credentialId = JSON.parse(JSON.parse(one.posted.finish[1]).registration_response_json).id;

  // 2. Two presence challenges answered through /presence, then the gateway allows.
  await one.page.goto(`${originA}/presence`);
  await one.page.waitForFunction(() => /answers for device/.test(document.querySelector('#device').textContent));
  for (const round of [1, 2]) {
    const issued = await ask({ action: 'challenge', deadline_seconds: 120 });
    await one.page.waitForSelector(`#challenges li[data-challenge="${issued.challenge_id}"]`, { timeout: 20000 });
    // Scheduled challenges may be open too: answer everything listed.
    while ((await one.page.locator('#challenges li').count()) > 0) {
      result = await clickAndSettle(one.page, '#answer', ['answered', 'failed']);
      check(result.state === 'answered', `presence round ${round} answered`, result.text);
    }
  }
  const decision = await ask({ action: 'check' });
  check(decision.allow, 'CheckAccess is ALLOW after the answers', decision.decision);
  await shot(one.page, 'web-presence');

  // 3. The same answer again is a replay.
  let replay = await postFromPage(one.page, '/api/presence/answer', one.posted.answer[0]);
  check(replay.status === 409 && /already answered/.test(replay.reply.reason), 'a replayed answer is refused',
    JSON.stringify(replay));

  // 4. Another laptop cannot answer this device's challenge.
  const two = await laptop('laptop-2', { transport: 'internal' });
  await two.page.goto(`${originA}/presence`);
  await two.page.waitForFunction(() => /not enrolled/.test(document.querySelector('#device').textContent));
  const foreign = await ask({ action: 'challenge', deadline_seconds: 120, credential_id: credentialId });
  const noKey = await two.page.evaluate(async (json) => {
    try {
      await navigator.credentials.get({ publicKey: window.tether.requestOptions(JSON.parse(json)) });
      return 'signed';
    } catch (e) {
      return e.name;
    }
  }, foreign.request_options_json);
  check(noKey === 'NotAllowedError', 'the second authenticator holds no key for the first device', noKey);
  const ownKeyAnswer = await two.page.evaluate(async (json) => {
    const options = JSON.parse(json);
    const rand = () => crypto.getRandomValues(new Uint8Array(32));
    const own = await navigator.credentials.create({ publicKey: {
      rp: { id: options.rpId, name: 'x' }, user: { id: rand(), name: 'x', displayName: 'x' }, challenge: rand(),
      pubKeyCredParams: [{ type: 'public-key', alg: -7 }], authenticatorSelection: { userVerification: 'required' },
    } });
    options.allowCredentials = [{ type: 'public-key', id: own.id }];
    const signed = await navigator.credentials.get({ publicKey: window.tether.requestOptions(options) });
    return JSON.stringify(window.tether.assertionJSON(signed));
  }, foreign.request_options_json);
  const stolen = await postFromPage(two.page, '/api/presence/answer',
    JSON.stringify({ challenge_id: foreign.challenge_id, assertion_response_json: ownKeyAnswer }));
  check(stolen.status === 403 && stolen.reply.state === 'refused',
    "another laptop's signature over this device's challenge is refused", JSON.stringify(stolen));
  await one.page.waitForSelector(`#challenges li[data-challenge="${foreign.challenge_id}"]`, { timeout: 20000 });
  result = await clickAndSettle(one.page, '#answer', ['answered', 'failed']);
  check(result.state === 'answered', 'the device itself still answers that challenge', result.text);

  // 5. An answer after the deadline is refused.
  const late = await ask({ action: 'challenge', deadline_seconds: 2, credential_id: credentialId });
  const lateAnswer = await signInPage(one.page, late.request_options_json);
  await new Promise((r) => setTimeout(r, 3000));
  const tooLate = await postFromPage(one.page, '/api/presence/answer',
    JSON.stringify({ challenge_id: late.challenge_id, assertion_response_json: lateAnswer }));
  check(tooLate.status === 409 && /deadline/.test(tooLate.reply.reason), 'a late answer is refused',
    JSON.stringify(tooLate));

  // 6. Without user verification the answer fails.
  await one.cdp.send('WebAuthn.setUserVerified', { authenticatorId: one.authenticatorId, isUserVerified: false });
  const unverified = await ask({ action: 'challenge', deadline_seconds: 120 });
  await one.page.waitForSelector(`#challenges li[data-challenge="${unverified.challenge_id}"]`, { timeout: 20000 });
  result = await clickAndSettle(one.page, '#answer', ['answered', 'failed']);
  check(result.state === 'failed', 'an answer without user verification fails', result.text);
  await one.cdp.send('WebAuthn.setUserVerified', { authenticatorId: one.authenticatorId, isUserVerified: true });

  // 7. Enrollment without user verification, a used token, an expired token, another tenant's token.
  const three = await laptop('laptop-3', { uv: false });
  result = await enrollAt(three, originA, need('TOKEN_UV'));
  check(result.state === 'refused', 'enrollment without user verification is refused', result.text);
  result = await enrollAt(one, originA, need('TOKEN'));
  check(result.state === 'refused' && /already used/.test(result.text), 'a used token is refused', result.text);
  result = await enrollAt(one, originA, need('TOKEN_EXPIRED'));
  check(result.state === 'refused' && /expired/.test(result.text), 'an expired token is refused', result.text);
  const four = await laptop('laptop-4');
  result = await enrollAt(four, originA, need('TOKEN_B'));
  check(result.state === 'refused' && /another organization/.test(result.text),
    "a token on another tenant's origin is refused", result.text);
  result = await enrollAt(four, originB, need('TOKEN_B'));
  check(result.state === 'enrolled', "the same token still enrolls on its own tenant's origin", result.text);

  check(violations.length === 0, 'no CSP violation or page error', violations.join('\n'));
} finally {
  await browser.close();
  // stdin would keep the process (and the test waiting for its output) alive.
  lines.close();
  process.stdin.destroy();
}
