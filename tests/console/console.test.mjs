// Browser tests of the operator console (src/http/console/): a real scim-sync daemon against the
// bundled control-plane simulator, both real processes on loopback, driven through Debian's
// headless Chromium by playwright-core. Run by tests/console/run.sh, which says what it needs.
//
// With CONSOLE_SCREENSHOTS=DIR, each view is saved there as a PNG (docs/images/ in the README).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync, readFileSync, mkdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { chromium } from 'playwright-core';

const ROOT = resolve(import.meta.dirname, '../..');
const BIN = resolve(ROOT, process.env.SCIM_SYNC_BIN || 'target/debug/scim-sync');
const SIM = resolve(ROOT, process.env.PORTKEY_SIM_BIN || 'target/debug/portkey-sim');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SHOTS = process.env.CONSOLE_SCREENSHOTS ? resolve(ROOT, process.env.CONSOLE_SCREENSHOTS) : null;

const SCIM_TOKEN = 'console-test-scim-token';
const ADMIN_TOKEN = 'console-test-admin-token';
const API_KEY = 'console-test-portkey-key';

const work = mkdtempSync(join(tmpdir(), 'scim-sync-console-'));
const children = [];
let ports;
let browser;
let page;
const requests = [];

function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

function start(name, cmd, args, env) {
  const log = join(work, `${name}.log`);
  writeFileSync(log, '');
  const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const append = (chunk) => writeFileSync(log, chunk, { flag: 'a' });
  child.stdout.on('data', append);
  child.stderr.on('data', append);
  children.push({ name, child, log });
  return child;
}

async function until(what, check, ms = 20000) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms (${last || 'no answer'})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const admin = (path) => `http://127.0.0.1:${ports.admin}${path}`;
const scim = (path) => `http://127.0.0.1:${ports.scim}/scim/v2${path}`;

async function call(url, method, token, body) {
  const r = await fetch(url, {
    method,
    headers: {
      Authorization: `Bearer ${token}`,
      'Content-Type': 'application/scim+json',
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  let json = null;
  try { json = JSON.parse(text); } catch (_) { json = null; }
  return { status: r.status, json, text };
}

async function scimCall(method, path, body) {
  const r = await call(scim(path), method, SCIM_TOKEN, body);
  assert.ok(r.status < 300, `${method} ${path}: ${r.status} ${r.text}`);
  return r.json;
}

async function adminCall(method, path) {
  const r = await call(admin(path), method, ADMIN_TOKEN);
  assert.ok(r.status < 300, `${method} ${path}: ${r.status} ${r.text}`);
  return r.json;
}

async function createUser(given, family) {
  const email = `${given.toLowerCase()}@example.com`;
  const u = await scimCall('POST', '/Users', {
    schemas: ['urn:ietf:params:scim:schemas:core:2.0:User'],
    userName: email,
    name: { givenName: given, familyName: family },
    emails: [{ value: email, primary: true, type: 'work' }],
    active: true,
  });
  return { id: u.id, email };
}

async function createGroup(name, members) {
  return scimCall('POST', '/Groups', {
    schemas: ['urn:ietf:params:scim:schemas:core:2.0:Group'],
    displayName: name,
    members: members.map((m) => ({ value: m.id })),
  });
}

/** Resyncs until the plan is empty but for what the fuse holds (invites accept in between). */
async function settle() {
  await until('a settled plan', async () => {
    await adminCall('POST', '/admin/resync?wait=true');
    const plan = await adminCall('GET', '/admin/plan');
    const held = new Set(plan.held_by_fuse.map((o) => JSON.stringify(o)));
    return plan.plan.ops.every((o) => held.has(JSON.stringify(o)));
  }, 30000);
}

async function simEmails() {
  const r = await fetch(`http://127.0.0.1:${ports.sim}/v1/admin/users?pageSize=100`, {
    headers: { 'x-portkey-api-key': API_KEY },
  });
  assert.equal(r.status, 200);
  return (await r.json()).data.map((u) => u.email).sort();
}

async function shot(name) {
  if (!SHOTS) return;
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: join(SHOTS, `console-${name}.png`), fullPage: true });
}

const people = {};

before(async () => {
  ports = { scim: await freePort(), admin: await freePort(), sim: await freePort() };
  start('sim', SIM, ['--listen', `127.0.0.1:${ports.sim}`, '--auto-accept-ms', '50'], {
    PORTKEY_SIM_API_KEY: API_KEY,
  });
  const config = join(work, 'scim-sync.toml');
  writeFileSync(config, [
    '[scim]', `listen = "127.0.0.1:${ports.scim}"`,
    '[admin]', `listen = "127.0.0.1:${ports.admin}"`,
    '[store]', `path = "${join(work, 'store.redb')}"`,
    '[portkey]', `base_url = "http://127.0.0.1:${ports.sim}/v1"`,
    // Hold anything over one deletion, so the review has something to show.
    '[sync]', 'max_deletions = 1', 'fuse_floor = 1', 'create_workspaces = true', '',
  ].join('\n'));
  start('scim-sync', BIN, ['serve', '--config', config], {
    SCIM_SYNC_SCIM_TOKEN: SCIM_TOKEN,
    SCIM_SYNC_ADMIN_TOKEN: ADMIN_TOKEN,
    PORTKEY_API_KEY: API_KEY,
    SCIM_SYNC_LOG: 'info',
  });
  await until('the daemon answering /healthz', async () => (await fetch(admin('/healthz'))).ok);

  for (const [g, f] of [['Alice', 'Ng'], ['Bob', 'Okafor'], ['Carol', 'Diaz'], ['Dave', 'Lin'], ['Erin', 'Park']]) {
    people[g.toLowerCase()] = await createUser(g, f);
  }
  await createGroup('ws-Engineering-role-member', [people.alice, people.bob, people.dave]);
  await createGroup('ws-Engineering-role-admin', [people.carol]);
  await createGroup('ws-Design-role-manager', [people.alice, people.erin]);
  // Everyone accepts their invite (the simulator does so after 50 ms), then gets their
  // workspaces, so that the removals below are of members, not of invites.
  await until('five members in the control plane', async () => (await simEmails()).length === 5);
  await settle();
  // Two people leave: more than max_deletions, so their removals are held.
  await scimCall('DELETE', `/Users/${people.bob.id}`);
  await scimCall('DELETE', `/Users/${people.carol.id}`);
  await settle();
  const st = await adminCall('GET', '/admin/status');
  assert.ok(st.reconciler.held_deletions.length >= 2, JSON.stringify(st.reconciler));

  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      // A name that is not loopback, for the exposure notice.
      '--host-resolver-rules=MAP console.example 127.0.0.1',
    ],
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  page = await context.newPage();
  page.on('request', (r) => requests.push(r.url()));
  page.on('pageerror', (e) => requests.push(`pageerror: ${e.message}`));
});

after(async () => {
  if (browser) await browser.close();
  await Promise.all(children.map(({ child }) => new Promise((done) => {
    if (child.exitCode !== null || child.signalCode !== null) return done();
    child.once('exit', done);
    child.kill('SIGTERM');
  })));
  if (process.env.CONSOLE_KEEP !== '1') rmSync(work, { recursive: true, force: true });
  else console.log(`kept ${work}`);
});

function logsOnFailure(fn) {
  return async (t) => {
    try {
      await fn(t);
    } catch (e) {
      for (const { name, log } of children) {
        const text = readFileSync(log, 'utf8').split('\n').slice(-25).join('\n');
        console.error(`--- last lines of ${name}.log\n${text}`);
      }
      throw e;
    }
  };
}

test('the page is served with a strict policy and no cookie', logsOnFailure(async () => {
  const r = await fetch(admin('/console'));
  assert.equal(r.status, 200);
  const csp = r.headers.get('content-security-policy');
  assert.match(csp, /default-src 'none'/);
  assert.match(csp, /script-src 'self'/);
  assert.match(csp, /connect-src 'self'/);
  assert.equal(r.headers.get('set-cookie'), null);
  const root = await fetch(admin('/'), { redirect: 'manual' });
  assert.equal(root.status, 303);
  assert.equal(root.headers.get('location'), '/console');
}));

test('a wrong token is refused and nothing is kept', logsOnFailure(async () => {
  await page.goto(admin('/console'));
  await page.locator('#sign-in').waitFor();
  assert.equal(await page.locator('#exposure').isVisible(), false, 'loopback needs no notice');
  await page.fill('#token', 'not-the-admin-token');
  await page.click('#sign-in-button');
  await page.locator('#sign-in-error').waitFor();
  assert.match(await page.textContent('#sign-in-error'), /refused/);
  assert.equal(await page.locator('#nav').isVisible(), false);
  assert.equal(await page.evaluate(() => sessionStorage.length), 0);
  await shot('sign-in');
}));

test('signed in, the overview shows health, held deletions and the last runs', logsOnFailure(async () => {
  await page.fill('#token', ADMIN_TOKEN);
  await page.click('#sign-in-button');
  await page.locator('#health').waitFor();
  const health = await page.textContent('#health');
  assert.match(health, /SCIM server\s*Answering/);
  assert.match(health, /Store\s*Healthy/);
  assert.match(health, /Control plane\s*Reachable/);
  assert.match(await page.textContent('#held-notice'), /2 deletions are held/);
  assert.equal(await page.textContent('#held-count'), '2');
  assert.ok(await page.locator('#runs tbody tr').count() >= 2);
  // The token lives in the tab's session only; no cookie carries it.
  assert.equal(await page.evaluate(() => sessionStorage.getItem('scim-sync.admin-token')), ADMIN_TOKEN);
  assert.deepEqual(await page.context().cookies(), []);
  await shot('overview');
}));

test('a person view shows desired and actual access and which groups grant it', logsOnFailure(async () => {
  await page.click('nav a[data-view=person]');
  await page.fill('#person-query', 'alice@example.com');
  await page.press('#person-query', 'Enter');
  await page.locator('#desired-workspaces').waitFor();
  const desired = await page.textContent('#desired-workspaces');
  assert.match(desired, /Engineering\s*member\s*in group ws-Engineering-role-member/);
  assert.match(desired, /Design\s*manager\s*in group ws-Design-role-manager/);
  assert.match(await page.textContent('#actual'), /alice@example\.com/);
  assert.match(await page.textContent('#planned'), /Nothing/);
  await shot('person');
  // Someone who is not there gets the daemon's answer, not an empty page.
  await page.goto(admin('/console#person/nobody%40example.com'));
  await page.locator('#person-error').waitFor();
  assert.match(await page.textContent('#person-error'), /neither a SCIM user/);
}));

test('approving approves what was shown, and only that', logsOnFailure(async () => {
  await page.click('nav a[data-view=held]');
  await page.locator('#held-table').waitFor();
  const shown = await page.locator('#held-table tbody tr').count();
  assert.equal(shown, 2);
  assert.match(await page.textContent('#held-table'), /remove bob@example\.com from the organisation/);
  assert.match(await page.textContent('#held-table'), /carol@example\.com/);
  await shot('held');

  // The held set changes while the page shows the old one: approval is refused.
  await scimCall('DELETE', `/Users/${people.dave.id}`);
  await until('a third held deletion', async () => {
    await adminCall('POST', '/admin/resync?wait=true');
    return (await adminCall('GET', '/admin/status')).reconciler.held_deletions.length === 3;
  });
  await page.click('#held-approve');
  await page.click('#held-approve-yes');
  await page.locator('#held-result').waitFor();
  assert.match(await page.textContent('#held-result'), /changed since this page showed it/);
  assert.equal((await adminCall('GET', '/admin/status')).reconciler.held_deletions.length, 3);
  assert.equal(await page.locator('#held-table tbody tr').count(), 3);

  // Approving the set now shown applies it.
  await page.click('#held-approve');
  await page.click('#held-approve-yes');
  await until('the approval result', async () => /Approved 3/.test(await page.textContent('#held-result')));
  await page.locator('#held-empty').waitFor();
  const st = await adminCall('GET', '/admin/status');
  assert.equal(st.reconciler.held_deletions.length, 0);
  assert.deepEqual(await simEmails(), ['alice@example.com', 'erin@example.com']);
}));

test('the audit log finds what was done about a person', logsOnFailure(async () => {
  await page.click('nav a[data-view=audit]');
  await page.fill('#audit-query', 'bob@example.com');
  await page.press('#audit-query', 'Enter');
  // The unfiltered list the click loaded may still be on the page when Enter is pressed: wait for
  // the search's own answer (its summary names the query) before reading the rows.
  await until('audit rows for bob', async () =>
    /mentioning “bob@example\.com”/.test(await page.locator('#audit-summary').textContent())
    && (await page.locator('#audit-table tbody tr').count()) > 0);
  const rows = await page.locator('#audit-table tbody tr').allTextContents();
  assert.ok(rows.every((r) => r.includes('bob@example.com')), rows.join('\n'));
  assert.ok(rows.some((r) => /remove bob@example\.com from the organisation/.test(r) && /ok/.test(r)), rows.join('\n'));
  assert.ok(rows.some((r) => /invite bob@example\.com/.test(r)), rows.join('\n'));
  assert.doesNotMatch(rows.join('\n'), /alice@example\.com/);
  await shot('audit');
}));

test('a running run shows its progress on the overview', logsOnFailure(async () => {
  // A slow control plane, so that the run lasts several refreshes of the page.
  const slow = await fetch(`http://127.0.0.1:${ports.sim}/_sim/faults`, {
    method: 'PUT',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ latency_ms: 700 }),
  });
  assert.ok(slow.ok, await slow.text());
  for (const [g, f] of [['Frank', 'Ito'], ['Grace', 'Hall'], ['Heidi', 'Moss'], ['Ivan', 'Roy'],
    ['Judy', 'Kent'], ['Mallory', 'Fox'], ['Niaj', 'Oduya'], ['Olivia', 'Stone']]) {
    people[g.toLowerCase()] = await createUser(g, f);
  }
  await page.click('nav a[data-view=overview]');
  await page.locator('#health').waitFor();
  await page.click('#resync');
  await until('the started run', async () => /Run run-\d+ started/.test(await page.textContent('#resync-result')));
  await page.locator('#run-progress').waitFor({ timeout: 15000 });
  assert.match(await page.textContent('#health'), /Reconciler\s*Running/);
  // The page reads the status every 3 s; read it now and again until the run applies.
  await until('ops counted as they apply', async () => {
    await page.evaluate(() => window.dispatchEvent(new HashChangeEvent('hashchange')));
    await page.locator('#health').waitFor();
    return /\d+ of \d+ ops applied/.test(await page.textContent('#health'));
  }, 30000);
  await shot('running');
  await shot('running');
  const fast = await fetch(`http://127.0.0.1:${ports.sim}/_sim/faults`, {
    method: 'PUT',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({}),
  });
  assert.ok(fast.ok);
  await until('the run done', async () => !(await adminCall('GET', '/admin/status')).reconciler.running);
}));

test('off loopback over plain HTTP, the page says so and takes no token', logsOnFailure(async () => {
  const other = await page.context().newPage();
  other.on('request', (r) => requests.push(r.url()));
  await other.goto(`http://console.example:${ports.admin}/console`);
  await other.locator('#exposure').waitFor();
  assert.match(await other.textContent('#exposure'), /not on loopback/);
  assert.equal(await other.locator('#token').isDisabled(), true);
  assert.equal(await other.locator('#nav').isVisible(), false);
  await other.close();
}));

test('the page made no request off-host and raised no error', () => {
  const local = new RegExp(`^http://(127\\.0\\.0\\.1|console\\.example):${ports.admin}/`);
  const off = requests.filter((u) => !local.test(u));
  assert.deepEqual(off, []);
  assert.ok(requests.some((u) => u.includes('/admin/audit')));
});
