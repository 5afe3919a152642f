// Transform tasks in the browser: launch one from the page and watch its progress bar move
// to SUCCESS without a reload, play the output in the page; the list updating its rows in
// place; revoke a slow task through the dialog; a failed task shows ffmpeg's error.

import assert from 'node:assert/strict';
import { before, test } from 'node:test';

import {
  api, assertClean, axeScan, clip, createUser, newPage, screenshot, signIn, transform, unique,
  uploadClip, waitFor, waitForTask,
} from './lib/harness.mjs';

let user;
let input;
let paced;

// The realtime filter paces ffmpeg at 1x, so a 12 s clip takes about 12 s whatever the
// machine's speed: long enough to sample the bar several times, short enough for CI.
const PACED = '-vf realtime,scale=-2:360 -c:v libx264 -preset veryfast -pix_fmt yuv420p -c:a aac -b:a 96k -f mp4';

before(async () => {
  user = await createUser({ first_name: 'Tess', last_name: 'Tasks' });
  input = await uploadClip(user, await clip('tasks-input', 12, 1280, 720), { title: unique('Tasks input') });
  paced = (await api('POST', '/transform/profiles', {
    auth: user, expect: 201,
    body: { title: unique('Paced 360p'), description: 'paced at 1x by the realtime filter', encoder_name: 'ffmpeg', encoder_string: PACED },
  })).body;
});

/** Go to a hash route in the same document (no reload) and wait for its heading. */
async function go(page, hash, heading) {
  await page.evaluate((h) => { window.location.hash = h; }, hash);
  if (heading) await page.getByRole('heading', { level: 1, name: heading }).waitFor();
}

async function signedIn() {
  const page = await newPage();
  await signIn(page, user.mail, user.secret);
  // Set once: still there at the end means the page never reloaded.
  await page.evaluate(() => { window.__sameDocument = 'still here'; });
  return page;
}

async function sameDocument(page) {
  assert.equal(await page.evaluate(() => window.__sameDocument), 'still here', 'the page reloaded');
}

/** The value of a <progress>, or null while it is indeterminate. */
function barValue(locator) {
  return locator.evaluate((el) => (el.hasAttribute('value') ? el.value : null));
}

async function plays(page) {
  const video = page.locator('.player video');
  await video.waitFor();
  await video.evaluate((v) => { v.muted = true; return v.play(); });
  await waitFor(() => video.evaluate((v) => v.readyState >= 2 && v.currentTime > 0.3), { what: 'the video to play', timeoutMs: 20_000 });
  const first = await video.evaluate((v) => v.currentTime);
  await waitFor(async () => (await video.evaluate((v) => v.currentTime)) > first + 0.3, { what: 'currentTime to advance', timeoutMs: 10_000 });
  assert.ok(await video.evaluate((v) => v.readyState >= 2), 'the video has data for the current frame');
}

test('launch a transform from the page; its bar moves to SUCCESS live; the output plays', async () => {
  const page = await signedIn();
  await go(page, `#/tasks/new?media=${input.id}`, 'Launch a transform');
  const media = page.getByLabel('Media', { exact: true });
  await waitFor(async () => (await media.inputValue()) === input.id, { what: 'the media from the address to be picked' });
  await page.getByLabel('Profile', { exact: true }).selectOption({ label: paced.title });
  // The profile's encoder string is the help under the picker.
  assert.ok((await page.locator('.encoder-string').first().textContent()).includes('realtime'));
  const filename = page.getByLabel('Output file name');
  assert.match(await filename.inputValue(), /^tasks-input-paced-360p-[0-9a-f]+\.mp4$/, 'the name follows the input and the profile');
  // A name the API refuses: its message under that field, and nothing launched.
  const refused = await api('POST', '/transform/tasks', {
    auth: user, expect: 422, body: { media_in_id: input.id, profile_id: paced.id, filename: 'no-extension', metadata: { title: 'x' } },
  });
  assert.equal(refused.body.error.field, 'filename');
  await filename.fill('no-extension');
  await page.getByRole('button', { name: 'Launch', exact: true }).click();
  const nameError = filename.locator('xpath=ancestor::div[contains(@class, "field")][1]').locator('.field-error');
  await nameError.waitFor({ state: 'visible' });
  assert.equal(await nameError.textContent(), refused.body.error.message);
  assert.ok(page.url().includes('#/tasks/new'), 'still on the form');
  await filename.fill('ui-launched.mp4');
  await page.getByLabel('Output title').fill('Launched from the page');
  await page.getByLabel('Priority').selectOption('5');
  await screenshot(page, 'task-new');
  await axeScan(page);
  await page.getByRole('button', { name: 'Launch', exact: true }).click();
  await page.waitForURL(/#\/tasks\/[0-9a-f-]{36}$/);
  const id = page.url().split('/').pop();
  const launched = (await api('GET', `/transform/tasks/${id}`, { auth: user, expect: 200 })).body;
  assert.equal(launched.media_in_id, input.id);
  assert.equal(launched.profile_id, paced.id);
  assert.equal(launched.priority, 5);

  // Sample the bar from the DOM until the badge says SUCCESS.
  const bar = page.getByRole('progressbar', { name: 'Transform progress' });
  const badge = page.locator('.task-status .badge');
  const seen = new Set();
  let shotRunning = false;
  await waitFor(async () => {
    const v = await barValue(bar);
    if (v !== null && v > 0 && v < 100) {
      seen.add(Math.round(v * 10) / 10);
      if (!shotRunning && v > 20) {
        shotRunning = true;
        await screenshot(page, 'task-running');
      }
    }
    return (await badge.textContent()) === 'SUCCESS';
  }, { timeoutMs: 90_000, intervalMs: 300, what: 'the task page to show SUCCESS' });
  assert.ok(seen.size >= 2, `the bar showed ${seen.size} intermediate value(s): ${[...seen].join(', ')}`);
  assert.equal(await barValue(bar), 100);
  const fps = await page.locator('.task-stats div', { hasText: 'FPS' }).locator('dd').textContent();
  assert.match(fps, /^\d+(\.\d)?$/, 'the fps of the last report');
  await sameDocument(page);

  // The output: linked, and playing in the page.
  const done = (await api('GET', `/transform/tasks/${id}`, { auth: user, expect: 200 })).body;
  const output = page.locator('section', { has: page.getByRole('heading', { name: 'Output', exact: true }) });
  assert.equal(await output.getByRole('link', { name: 'Open Launched from the page' }).getAttribute('href'), `#/medias/${done.media_out_id}`);
  await plays(page);
  await screenshot(page, 'task-success');
  await axeScan(page);
  await sameDocument(page);
  assertClean(page, { allow: [/status of 422 .*\/api\/v1\/transform\/tasks/] });
  await page.context().close();
});

test('the list updates its rows in place; revoke a slow task through the dialog', async () => {
  // 40 s at 1x: plenty of time to watch the row and revoke it while it runs.
  const long = await uploadClip(user, await clip('tasks-long', 40, 640, 360), { title: unique('Long input') });
  const title = unique('To revoke');
  const task = await transform(user, { media: long.id, profile: paced.id, filename: 'to-revoke.mp4', title });
  const page = await signedIn();
  await go(page, '#/tasks?status=STARTED,PROGRESS,REVOKING', 'Transform tasks');
  assert.equal(await page.getByLabel('Status', { exact: true }).inputValue(), 'STARTED,PROGRESS,REVOKING', 'the filter comes from the address');
  const row = page.locator(`tr[data-id="${task.id}"]`);
  await row.waitFor({ timeout: 30_000 });
  const handle = await row.elementHandle();
  const bar = row.getByRole('progressbar');
  // The operator is using the filter while the list refreshes: focus must stay there.
  await page.getByLabel('Sort').focus();
  const values = new Set();
  await waitFor(async () => {
    const v = await barValue(bar);
    if (v !== null && v > 0 && v < 100) values.add(Math.round(v));
    return values.size >= 2;
  }, { timeoutMs: 30_000, intervalMs: 300, what: 'the row\'s bar to move' });
  assert.ok(await handle.evaluate((el) => el.isConnected), 'the row is the same node: updated in place, not re-rendered');
  assert.equal(await page.evaluate(() => document.activeElement?.getAttribute('name')), 'sort', 'the focus stayed on the sort control');
  assert.match(await row.locator('.progress-line').textContent(), /fps/);
  assert.equal(await row.locator('td[data-label="Queue"]').textContent(), 'transform');
  await screenshot(page, 'tasks-list');
  await axeScan(page);

  // Open it from its row and revoke it.
  await row.getByRole('link', { name: title, exact: true }).click();
  await page.waitForURL(new RegExp(`#/tasks/${task.id}$`));
  await page.getByRole('button', { name: 'Revoke this task' }).click();
  const dialog = page.getByRole('dialog', { name: 'Revoke the task?' });
  await dialog.waitFor();
  await axeScan(page);
  await dialog.getByRole('button', { name: 'Revoke task' }).click();
  await waitFor(async () => (await page.locator('.task-status .badge').textContent()) === 'REVOKED', { timeoutMs: 30_000, what: 'REVOKED on the page' });
  assert.equal((await api('GET', `/transform/tasks/${task.id}`, { auth: user, expect: 200 })).body.status, 'REVOKED');
  assert.ok(await page.getByRole('button', { name: 'Revoke this task' }).isHidden(), 'no revoke once revoked');
  await screenshot(page, 'task-revoked');

  // The list, filtered on finished tasks, shows it as such.
  await go(page, '#/tasks', 'Transform tasks');
  await page.getByLabel('Status', { exact: true }).selectOption('REVOKED');
  await page.waitForURL(/status=REVOKED/);
  await page.locator(`tr[data-id="${task.id}"] .badge`, { hasText: 'REVOKED' }).waitFor();
  await sameDocument(page);
  assertClean(page);
  await page.context().close();
});

test('a failed task shows ffmpeg\'s error in full, in a focusable log', async () => {
  // A video-only input and a profile that maps its audio: ffmpeg refuses at run time.
  const silent = await uploadClip(user, await clip('tasks-silent', 2, 320, 240, { audio: false }), { title: unique('Silent') });
  const audioOnly = (await api('POST', '/transform/profiles', {
    auth: user, expect: 201, body: { title: unique('Audio only'), encoder_name: 'ffmpeg', encoder_string: '-map 0:a -c:a aac -f mp4' },
  })).body;
  const task = await transform(user, { media: silent.id, profile: audioOnly.id, filename: 'no-audio.mp4' });
  const failed = await waitForTask(user, 'transform', task.id, 'FAILURE');
  assert.ok(failed.error, 'the API carries the error');
  const page = await signedIn();
  await go(page, `#/tasks/${task.id}`, /^Transform: /);
  const log = page.locator('pre.log');
  await log.waitFor();
  assert.equal(await log.textContent(), failed.error, 'the whole error, as the API has it');
  assert.match(await log.textContent(), /matches no streams/i);
  assert.equal(await log.getAttribute('tabindex'), '0', 'the log is focusable (it scrolls)');
  const labelled = await log.getAttribute('aria-labelledby');
  assert.match(await page.locator(`#${labelled}`).textContent(), /ffmpeg/);
  assert.equal(await log.evaluate((el) => getComputedStyle(el).fontFamily.includes('mono')), true, 'monospace');
  await log.focus();
  assert.equal(await page.evaluate(() => document.activeElement?.tagName), 'PRE');
  assert.equal(await page.locator('.task-status .badge').textContent(), 'FAILURE');
  await screenshot(page, 'task-failure', { fullPage: true });
  await axeScan(page);

  // The overview's "failed in 24 h" link: a status and a finished_after in the address.
  const since = new Date(Date.now() - 3600_000).toISOString();
  await go(page, `#/tasks?status=FAILURE&finished_after=${encodeURIComponent(since)}`, 'Transform tasks');
  await page.locator(`tr[data-id="${task.id}"] .badge`, { hasText: 'FAILURE' }).waitFor();
  assert.equal(await page.getByLabel('Status', { exact: true }).inputValue(), 'FAILURE');
  assert.match(await page.locator('.chip').textContent(), /^Finished after /);
  await page.getByRole('button', { name: 'Clear the finish time filter' }).click();
  await page.waitForURL((url) => !url.hash.includes('finished_after'));
  assert.equal(await page.locator('.chip').count(), 0);
  await sameDocument(page);
  assertClean(page);
  await page.context().close();
});
