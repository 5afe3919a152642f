// The browser tests' shared harness: the orchestra under test (started by
// tests/tests/ui.rs, which passes it in OSCIED_UI_* variables), API helpers over fetch,
// lavfi clips made with ffmpeg, and Debian's headless chromium driven by playwright-core
// with every console error, page error, CSP violation and dialog recorded.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, openAsBlob, readFileSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { after } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import { chromium } from 'playwright-core';

function required(name) {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set: run the browser tests with \`cargo test -p oscied-e2e --test ui\`, which starts an orchestra for them`);
  }
  return value;
}

/** The orchestra's origin, `http://127.0.0.1:<port>` (no trailing slash). */
export const ORCHESTRA = required('OSCIED_UI_URL').replace(/\/+$/, '');
/** Its API root, `<ORCHESTRA>/api/v1`. */
export const API = `${ORCHESTRA}/api/v1`;
/** root's secret (Basic `root:<secret>`). */
export const ROOT_SECRET = required('OSCIED_UI_ROOT_SECRET');
/** The standalone in-process publisher's base URL, where published medias are served. */
export const PUBLISHER = process.env.OSCIED_UI_PUBLISHER_URL ?? '';
/** The orchestra's working directory (`oscied-data/`, `orchestra.log`). */
export const WORKDIR = process.env.OSCIED_UI_WORKDIR ?? '';
/** Where screenshot() writes. */
export const SCREENSHOTS = resolve(process.env.OSCIED_UI_SCREENSHOTS
  ?? join(dirname(fileURLToPath(import.meta.url)), '../../../target/ui-screenshots'));
/** The browser: Debian's chromium, never a downloaded one. */
export const CHROMIUM = process.env.OSCIED_UI_CHROMIUM ?? '/usr/bin/chromium';

/** The two sizes every screenshot is taken at: a laptop and a phone. */
export const VIEWPORTS = Object.freeze([
  Object.freeze({ width: 1280, height: 800 }),
  Object.freeze({ width: 390, height: 844 }),
]);

/** The Content-Security-Policy every UI response carries (the issue's, verbatim). */
export const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; "
  + "img-src 'self' blob: data:; media-src 'self' blob: http: https:; "
  + "connect-src 'self' http: https:; worker-src 'self' blob:; object-src 'none'; "
  + "base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

// ---------------------------------------------------------------------------------------
// API over fetch

/** A random suffix for names, so tests sharing an orchestra never collide. */
export function unique(prefix = 'ui') {
  return `${prefix}-${randomBytes(4).toString('hex')}`;
}

/**
 * The Authorization header value for `auth`:
 * - `'root'`: Basic root:ROOT_SECRET;
 * - `{ mail, secret }` (a user from createUser): Basic;
 * - `{ token }`: Bearer;
 * - `undefined`/`null`: none.
 */
export function authorization(auth) {
  if (!auth) return undefined;
  if (auth === 'root') return basic('root', ROOT_SECRET);
  if (typeof auth.token === 'string') return `Bearer ${auth.token}`;
  if (typeof auth.mail === 'string' && typeof auth.secret === 'string') return basic(auth.mail, auth.secret);
  throw new Error(`cannot authenticate as ${JSON.stringify(auth)}`);
}

function basic(user, secret) {
  return `Basic ${Buffer.from(`${user}:${secret}`).toString('base64')}`;
}

/**
 * One API call. `path` is below /api/v1 (`/users`) or absolute from the origin (`/app.css`
 * with `{ raw: true }`). Options: `auth` (see authorization), `body` (sent as JSON), `form`
 * (a FormData, sent as multipart), `headers`, `expect` (a status or list of statuses; any
 * other throws with the answer). Answers `{ status, headers, body, text }`; `body` is the
 * parsed JSON or null.
 */
export async function api(method, path, { auth, body, form, headers = {}, expect, raw = false } = {}) {
  const url = `${raw ? ORCHESTRA : API}${path}`;
  const sent = { ...headers };
  const value = authorization(auth);
  if (value) sent.authorization = value;
  let payload;
  if (form !== undefined) {
    payload = form;
  } else if (body !== undefined) {
    sent['content-type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  const response = await fetch(url, { method, headers: sent, body: payload, redirect: 'manual' });
  const text = await response.text();
  let parsed = null;
  if ((response.headers.get('content-type') ?? '').includes('json') && text) {
    try { parsed = JSON.parse(text); } catch { parsed = null; }
  }
  const answer = { status: response.status, headers: response.headers, body: parsed, text };
  if (expect !== undefined) {
    const wanted = [expect].flat();
    if (!wanted.includes(response.status)) {
      throw new Error(`${method} ${path}: expected ${wanted.join(' or ')}, got ${response.status}: ${text.slice(0, 2000)}`);
    }
  }
  return answer;
}

/**
 * Create a user as root. Every field has a default: `mail` (unique), `secret` (random, 24
 * characters), `first_name`, `last_name`, `admin` (false). Answers the user's JSON plus
 * `secret`, so the result can be passed as `auth` to the helpers.
 */
export async function createUser({ mail, secret, first_name = 'Test', last_name = 'User', admin = false } = {}) {
  const user = {
    first_name,
    last_name,
    mail: mail ?? `${unique('user')}@oscied.test`,
    secret: secret ?? randomBytes(18).toString('base64url'),
    admin_platform: admin,
  };
  const { body } = await api('POST', '/users', { auth: 'root', body: user, expect: 201 });
  return { ...body, secret: user.secret };
}

/** Mint a bearer token for `auth` (`'root'` or `{ mail, secret }`); answers the token. */
export async function mintToken(auth) {
  const { body } = await api('POST', '/auth/token', { auth, expect: 201 });
  return body.token;
}

/**
 * Upload a file as `auth` (a user; root owns nothing). Options: `title` (default the file's
 * name), `metadata` (an object, merged with the title), `filename`. Answers the media JSON
 * (READY once the upload is answered).
 */
export async function uploadClip(auth, file, { title, metadata, filename } = {}) {
  const form = new FormData();
  form.set('title', title ?? basename(file));
  if (metadata !== undefined) form.set('metadata', JSON.stringify(metadata));
  form.set('file', await openAsBlob(file), filename ?? basename(file));
  const { body } = await api('POST', '/medias', { auth, form, expect: 201 });
  return body;
}

/** The built-in or user profile named `title`, as `auth` sees it. */
export async function profileNamed(auth, title) {
  const { body } = await api('GET', '/transform/profiles?limit=1000', { auth, expect: 200 });
  const profile = body.items.find((p) => p.title === title);
  assert.ok(profile, `no profile ${JSON.stringify(title)} among ${body.items.map((p) => p.title).join(', ')}`);
  return profile;
}

/**
 * Launch a transform as `auth`: `media` (id), `profile` (id or title), `filename` of the
 * output, `title` of the output (default the filename), `queue`. Answers the task JSON.
 */
export async function transform(auth, { media, profile, filename, title, queue }) {
  const profileId = /^[0-9a-f-]{36}$/.test(profile) ? profile : (await profileNamed(auth, profile)).id;
  const body = { media_in_id: media, profile_id: profileId, filename, metadata: { title: title ?? filename } };
  if (queue !== undefined) body.queue = queue;
  return (await api('POST', '/transform/tasks', { auth, body, expect: 201 })).body;
}

/** Publish media `media` (id) as `auth`; answers the publisher task JSON. */
export async function publish(auth, media, { queue } = {}) {
  const body = { media_id: media };
  if (queue !== undefined) body.queue = queue;
  return (await api('POST', '/publisher/tasks', { auth, body, expect: 201 })).body;
}

const FINAL = ['SUCCESS', 'FAILURE', 'REVOKED'];

/**
 * Poll task `id` of `kind` (`'transform'` or `'publisher'`) as `auth` until its status is
 * one of `statuses` (a status or a list). A final status that is not wanted, or the time
 * running out (`timeoutMs`, default 120 s), throws with the task. Answers the task JSON.
 */
export async function waitForTask(auth, kind, id, statuses = 'SUCCESS', { timeoutMs = 120_000 } = {}) {
  assert.ok(kind === 'transform' || kind === 'publisher', `task kind ${kind}`);
  const wanted = [statuses].flat();
  let task;
  await waitFor(async () => {
    task = (await api('GET', `/${kind}/tasks/${id}`, { auth, expect: 200 })).body;
    if (wanted.includes(task.status)) return true;
    if (FINAL.includes(task.status)) {
      throw new Error(`${kind} task ${id} ended ${task.status}, not ${wanted.join('/')}: ${JSON.stringify(task)}`);
    }
    return false;
  }, { timeoutMs, what: () => `${kind} task ${id} to be ${wanted.join('/')} (last: ${JSON.stringify(task)})` });
  return task;
}

/** Poll media `id` as `auth` until its status is `status` (default READY); answers it. */
export async function waitForMedia(auth, id, status = 'READY', { timeoutMs = 120_000 } = {}) {
  let media;
  await waitFor(async () => {
    media = (await api('GET', `/medias/${id}`, { auth, expect: 200 })).body;
    return media.status === status;
  }, { timeoutMs, what: () => `media ${id} to be ${status} (last: ${JSON.stringify(media)})` });
  return media;
}

/**
 * Call `check` every `intervalMs` (default 250) until it answers truthy; answers that value.
 * Throws when `timeoutMs` (default 30 s) passes; `what` (a string or a function giving one)
 * says what was awaited. An exception from `check` stops the wait.
 */
export async function waitFor(check, { timeoutMs = 30_000, intervalMs = 250, what = 'a condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${typeof what === 'function' ? what() : what}`);
    }
    await new Promise((done) => setTimeout(done, intervalMs));
  }
}

// ---------------------------------------------------------------------------------------
// Clips

const run = promisify(execFile);
let clipDir;
const clips = new Map();

/**
 * A test clip made by ffmpeg from lavfi: testsrc2 video of `width`x`height` and a 440 Hz sine
 * tone, `seconds` long, H.264 (yuv420p) and stereo AAC in MP4 with the index in front. Options:
 * `fps` (25), `audio` (true), `extension` ('mp4'; the container follows it), `args` (extra
 * ffmpeg output arguments, before the file name). Made once per name and settings per
 * process, in a temporary directory removed after the file's tests; answers its absolute
 * path, named `<name>.<extension>`.
 */
export async function clip(name, seconds = 2, width = 320, height = 240, opts = {}) {
  const { fps = 25, audio = true, extension = 'mp4', args = [] } = opts;
  assert.match(name, /^[A-Za-z0-9_-]+$/, 'a clip name is letters, digits, _ and -');
  const key = JSON.stringify([name, seconds, width, height, fps, audio, extension, args]);
  if (clips.has(key)) return clips.get(key);
  clipDir ??= mkdtempSync(join(tmpdir(), 'oscied-ui-clips-'));
  const out = join(clipDir, `${name}.${extension}`);
  const inputs = ['-f', 'lavfi', '-i', `testsrc2=size=${width}x${height}:rate=${fps}:duration=${seconds}`];
  if (audio) inputs.push('-f', 'lavfi', '-i', `sine=frequency=440:sample_rate=48000:duration=${seconds}`);
  const codecs = ['-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p'];
  if (audio) codecs.push('-ac', '2', '-c:a', 'aac', '-b:a', '64k', '-shortest');
  if (extension === 'mp4' || extension === 'mov') codecs.push('-movflags', '+faststart');
  try {
    await run('ffmpeg', ['-nostdin', '-hide_banner', '-loglevel', 'error', '-y', ...inputs, ...codecs, ...args, out]);
  } catch (error) {
    throw new Error(`ffmpeg could not make clip ${name}: ${error.stderr || error.message}`);
  }
  assert.ok(statSync(out).size > 0, `ffmpeg made an empty ${out}`);
  clips.set(key, out);
  return out;
}

after(() => {
  if (clipDir) rmSync(clipDir, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------
// The browser

/** The flags chromium runs with: headless, no sandbox (root in CI), nothing phoning home. */
export const CHROMIUM_ARGS = Object.freeze([
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
]);

let browser;

/**
 * The process's one chromium (launched on first call, closed after the file's tests).
 * Playwright gives it a fresh profile under the temp dir (TMPDIR; tests/tests/ui.rs points
 * that at a `oscied-ui-*` directory of its own, which .ci/run's clean-up matches).
 */
export async function openBrowser() {
  if (browser?.isConnected()) return browser;
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // Added to Playwright's own (which it needs to drive the browser).
    args: [...CHROMIUM_ARGS],
  });
  return browser;
}

/** Close the browser if one is open. Registered to run after each test file. */
export async function closeBrowser() {
  const open = browser;
  browser = undefined;
  if (open) await open.close();
}

after(closeBrowser);

const watched = new WeakMap();

/**
 * A page in a fresh browser context (its own cookies and storage) of `viewport` (default
 * 1280x800), recording console errors, page errors, CSP violations (the
 * `securitypolicyviolation` event and chromium's console report of it) and dialogs, for
 * assertClean. `page.problems` and `page.dialogs` are the live lists.
 */
export async function newPage(viewport = VIEWPORTS[0]) {
  const context = await (await openBrowser()).newContext({ viewport: { ...viewport } });
  const page = await context.newPage();
  const problems = [];
  page.problems = problems;
  page.on('console', (message) => {
    const text = message.text();
    if (message.type() === 'error' || /Content Security Policy/i.test(text)) {
      const at = message.location()?.url ? ` (${message.location().url}:${message.location().lineNumber})` : '';
      problems.push(`console ${message.type()}: ${text}${at}`);
    }
  });
  page.on('pageerror', (error) => problems.push(`page error: ${error.stack || error.message}`));
  // A binding and an init script are added over CDP, so the page's CSP does not apply to them.
  await page.exposeBinding('__osciedCspViolation', (_source, v) => {
    problems.push(`CSP violation: ${v.directive} blocked ${v.blocked || '(inline)'} at ${v.source}:${v.line}${v.sample ? ` sample ${JSON.stringify(v.sample)}` : ''}`);
  });
  await page.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__osciedCspViolation({
        directive: e.effectiveDirective || e.violatedDirective,
        blocked: e.blockedURI,
        source: e.sourceFile,
        line: e.lineNumber,
        sample: e.sample,
      });
    });
  });
  dialogWatch(page);
  return page;
}

/**
 * Record every alert, confirm, prompt or beforeunload dialog `page` opens, answering each
 * (dismissed, or accepted with `{ accept: true }`). Answers the live list of
 * `{ type, message }`; the same list on every call. newPage() starts it.
 */
export function dialogWatch(page, { accept = false } = {}) {
  let watch = watched.get(page);
  if (!watch) {
    watch = { accept, dialogs: [] };
    watched.set(page, watch);
    page.dialogs = watch.dialogs;
    page.on('dialog', async (dialog) => {
      watch.dialogs.push({ type: dialog.type(), message: dialog.message() });
      await (watch.accept ? dialog.accept() : dialog.dismiss()).catch(() => {});
    });
  }
  watch.accept = accept;
  return watch.dialogs;
}

/**
 * Fail if `page` recorded a console error, a page error, a CSP violation or (unless
 * `dialogs: true`) a dialog. `allow` is a list of RegExps: problems matching one are ignored
 * (say, the console's "Failed to load resource ... 401" of a wrong-secret test).
 */
export function assertClean(page, { allow = [], dialogs = false } = {}) {
  const found = (page.problems ?? []).filter((p) => !allow.some((re) => re.test(p)));
  if (!dialogs) {
    for (const d of watched.get(page)?.dialogs ?? []) found.push(`dialog ${d.type}: ${d.message}`);
  }
  assert.ok(found.length === 0, `the page at ${page.url()} had ${found.length} problem(s):\n  ${found.join('\n  ')}`);
}

/**
 * Sign in through the page's own form: open the UI, fill "Mail" and "Secret", press
 * "Sign in", and wait until that button is gone or hidden (the UI moved on).
 */
export async function signIn(page, mail, secret) {
  if (!page.url().startsWith(ORCHESTRA)) await page.goto(`${ORCHESTRA}/`);
  await page.getByLabel('Mail', { exact: true }).fill(mail);
  await page.getByLabel('Secret', { exact: true }).fill(secret);
  const button = page.getByRole('button', { name: 'Sign in', exact: true });
  await button.click();
  await button.waitFor({ state: 'hidden', timeout: 15_000 });
}

/**
 * Save `page` as `<SCREENSHOTS>/<name>-1280x800.png` and `<name>-390x844.png`: for each size,
 * resize, wait for layout to settle, capture the viewport; then restore the page's size.
 * Answers the two paths.
 */
export async function screenshot(page, name, { fullPage = false } = {}) {
  assert.match(name, /^[A-Za-z0-9_-]+$/, 'a screenshot name is letters, digits, _ and -');
  mkdirSync(SCREENSHOTS, { recursive: true });
  const original = page.viewportSize();
  const paths = [];
  try {
    for (const size of VIEWPORTS) {
      await page.setViewportSize({ ...size });
      await settle(page);
      const path = join(SCREENSHOTS, `${name}-${size.width}x${size.height}.png`);
      await page.screenshot({ path, fullPage, animations: 'disabled' });
      paths.push(path);
    }
  } finally {
    if (original) await page.setViewportSize(original);
  }
  return paths;
}

/** Fonts loaded and two animation frames drawn since the last change. */
async function settle(page) {
  await page.evaluate(async () => {
    await document.fonts.ready;
    await new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)));
  });
}

const require = createRequire(import.meta.url);
let axeSource;

/**
 * Run axe-core on `page` and fail on any serious or critical violation, listing each rule
 * with the elements it flags. axe is evaluated over CDP (the page's CSP stays as served).
 * Options: `include`/`exclude` (selectors, axe's context), `rules` (axe's per-rule options),
 * `impacts` (which impacts fail; default serious and critical). Answers axe's results.
 */
export async function axeScan(page, { include, exclude, rules, impacts = ['serious', 'critical'] } = {}) {
  axeSource ??= readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
  if (!(await page.evaluate(() => typeof window.axe === 'object'))) {
    await page.evaluate(axeSource);
  }
  const context = include || exclude ? { include: include ?? [['html']], exclude: exclude ?? [] } : undefined;
  const results = await page.evaluate(
    async ([ctx, ruleOptions]) => window.axe.run(ctx ?? document, { resultTypes: ['violations'], ...(ruleOptions ? { rules: ruleOptions } : {}) }),
    [context, rules],
  );
  const failing = results.violations.filter((v) => impacts.includes(v.impact));
  const listing = failing.map((v) => {
    const nodes = v.nodes.slice(0, 10).map((n) => {
      const why = n.failureSummary?.split('\n')[1]?.trim();
      return `      ${n.target.join(' ')}  ${n.html.slice(0, 160)}${why ? `\n        ${why}` : ''}`;
    });
    return `  [${v.impact}] ${v.id}: ${v.help} (${v.helpUrl})\n${nodes.join('\n')}`;
  });
  assert.ok(failing.length === 0, `axe found ${failing.length} serious/critical violation(s) on ${page.url()}:\n${listing.join('\n')}`);
  return results;
}
