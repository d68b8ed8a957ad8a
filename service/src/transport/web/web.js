// Tether worker web app: enrollment (/enroll) and presence (/presence) through the
// browser's WebAuthn. Served from 'self' under a CSP without inline script; every
// check happens on the server, this file only carries bytes between the
// authenticator and tetherd.
'use strict';

const csrf = () => document.querySelector('meta[name="tether-csrf"]').content;

const b64urlToBytes = (text) => {
  const b64 = text.replace(/-/g, '+').replace(/_/g, '/');
  const raw = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4));
  return Uint8Array.from(raw, (c) => c.charCodeAt(0));
};

const bytesToB64url = (buffer) => {
  const bytes = new Uint8Array(buffer);
  let raw = '';
  for (const b of bytes) raw += String.fromCharCode(b);
  return btoa(raw).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
};

const setStatus = (state, text) => {
  const status = document.getElementById('status');
  status.dataset.state = state;
  status.textContent = text;
};

// One JSON call; a refusal throws with the server's sentence.
const call = async (method, path, body) => {
  const init = { method, headers: { 'X-Tether-Csrf': csrf() }, credentials: 'same-origin' };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  let reply = {};
  try {
    reply = await response.json();
  } catch (_) {
    reply = { reason: `the server answered ${response.status}` };
  }
  if (!response.ok) throw new Error(reply.reason || `the server answered ${response.status}`);
  return reply;
};

// What a DOMException from the authenticator means for the person in front of it.
const authenticatorError = (e) => {
  if (e && e.name === 'NotAllowedError') {
    return 'The security key or Windows Hello / Touch ID prompt was cancelled or timed out, or this key ' +
      'cannot do it. Try again and confirm with your PIN, fingerprint or face.';
  }
  if (e && e.name === 'InvalidStateError') return 'This authenticator is already enrolled for this device.';
  if (e && e.name === 'SecurityError') return 'This browser refused the request for this site (its address does not match the organization\'s).';
  return String(e && e.message ? e.message : e);
};

// --- enrollment ---------------------------------------------------------------------------

const creationOptions = (json) => ({
  ...json,
  challenge: b64urlToBytes(json.challenge),
  user: { ...json.user, id: b64urlToBytes(json.user.id) },
  excludeCredentials: (json.excludeCredentials || []).map((c) => ({ ...c, id: b64urlToBytes(c.id) })),
});

const registrationJSON = (credential) => ({
  id: credential.id,
  rawId: bytesToB64url(credential.rawId),
  type: credential.type,
  authenticatorAttachment: credential.authenticatorAttachment || undefined,
  clientExtensionResults: credential.getClientExtensionResults(),
  response: {
    clientDataJSON: bytesToB64url(credential.response.clientDataJSON),
    attestationObject: bytesToB64url(credential.response.attestationObject),
    transports: credential.response.getTransports ? credential.response.getTransports() : [],
  },
});

const enroll = async () => {
  const token = document.getElementById('token').value.trim();
  if (!token) {
    setStatus('refused', 'Paste the enrollment token from your administrator first.');
    return;
  }
  const button = document.getElementById('enroll');
  button.disabled = true;
  setStatus('working', 'Waiting for your security hardware…');
  try {
    const begun = await call('POST', '/api/enroll/begin', { token });
    let credential;
    try {
      credential = await navigator.credentials.create({ publicKey: creationOptions(begun.creation_options) });
    } catch (e) {
      throw new Error(authenticatorError(e));
    }
    const done = await call('POST', '/api/enroll/finish', {
      enrollment_id: begun.enrollment_id,
      token,
      registration_response_json: JSON.stringify(registrationJSON(credential)),
    });
    const how = done.attested ? `attested by ${done.trust_anchor || done.format}` : `not attested (${done.attestation_reason})`;
    setStatus('enrolled', `Enrolled: this device is registered (${how}). Keep the presence page open.`);
    document.getElementById('token').value = '';
  } catch (e) {
    setStatus('refused', `Enrollment refused: ${e.message}`);
  } finally {
    button.disabled = false;
  }
};

const startEnroll = () => {
  // The token arrives in the fragment (never sent to any server, never in a Referer); take
  // it out of the address bar and history at once.
  const fragment = new URLSearchParams(location.hash.slice(1));
  const token = fragment.get('token');
  if (token) {
    document.getElementById('token').value = token;
    history.replaceState(null, '', location.pathname);
  }
  document.getElementById('enroll').addEventListener('click', enroll);
};

// --- presence -----------------------------------------------------------------------------

let open = [];
const notified = new Set();

const requestOptions = (json) => ({
  ...json,
  challenge: b64urlToBytes(json.challenge),
  allowCredentials: (json.allowCredentials || []).map((c) => ({ ...c, id: b64urlToBytes(c.id) })),
  userVerification: 'required',
});

const assertionJSON = (credential) => ({
  id: credential.id,
  rawId: bytesToB64url(credential.rawId),
  type: credential.type,
  authenticatorAttachment: credential.authenticatorAttachment || undefined,
  clientExtensionResults: credential.getClientExtensionResults(),
  response: {
    clientDataJSON: bytesToB64url(credential.response.clientDataJSON),
    authenticatorData: bytesToB64url(credential.response.authenticatorData),
    signature: bytesToB64url(credential.response.signature),
    userHandle: credential.response.userHandle ? bytesToB64url(credential.response.userHandle) : undefined,
  },
});

const render = (reply) => {
  const list = document.getElementById('challenges');
  list.replaceChildren();
  open = reply.challenges || [];
  list.dataset.count = String(open.length);
  for (const c of open) {
    const item = document.createElement('li');
    const seconds = Math.max(0, Math.round((c.deadline_ms - Date.now()) / 1000));
    item.textContent = `Presence request — answer within ${seconds} s`;
    item.dataset.challenge = c.challenge_id;
    list.append(item);
    if (!notified.has(c.challenge_id) && 'Notification' in window && Notification.permission === 'granted') {
      notified.add(c.challenge_id);
      new Notification('Tether: confirm you are at your laptop', { body: 'Open the presence page and answer.' });
    }
  }
  document.getElementById('answer').disabled = open.length === 0;
  document.getElementById('device').textContent =
    reply.state === 'enrolled' ? `This browser answers for device ${reply.device_id}.` : reply.reason || '';
};

const poll = async () => {
  try {
    render(await call('GET', '/api/presence/pending'));
  } catch (e) {
    document.getElementById('device').textContent = `Cannot reach the server: ${e.message}`;
  }
};

const answer = async () => {
  const challenge = open[0];
  if (!challenge) return;
  const button = document.getElementById('answer');
  button.disabled = true;
  setStatus('working', 'Waiting for your security hardware…');
  try {
    let credential;
    try {
      credential = await navigator.credentials.get({ publicKey: requestOptions(challenge.request_options) });
    } catch (e) {
      throw new Error(authenticatorError(e));
    }
    await call('POST', '/api/presence/answer', {
      challenge_id: challenge.challenge_id,
      assertion_response_json: JSON.stringify(assertionJSON(credential)),
    });
    setStatus('answered', 'Answered: thank you, your presence is confirmed.');
  } catch (e) {
    setStatus('failed', `The answer was refused: ${e.message}`);
  } finally {
    await poll();
  }
};

const startPresence = () => {
  document.getElementById('answer').addEventListener('click', answer);
  const notify = document.getElementById('notify');
  if (!('Notification' in window) || Notification.permission === 'granted') notify.hidden = true;
  notify.addEventListener('click', async () => {
    if ((await Notification.requestPermission()) === 'granted') notify.hidden = true;
  });
  poll();
  setInterval(poll, 3000);
};

document.addEventListener('DOMContentLoaded', () => {
  const page = document.body.dataset.page;
  if (!window.PublicKeyCredential) {
    setStatus('refused', 'This browser does not support security keys (WebAuthn); use a current Chrome, Edge, Safari or Firefox.');
    return;
  }
  if (page === 'enroll') startEnroll();
  if (page === 'presence') startPresence();
});

// Tests and people can read the helpers from the console.
window.tether = { b64urlToBytes, bytesToB64url, assertionJSON, requestOptions, call };
