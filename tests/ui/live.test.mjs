// The web UI on the event stream (GET /api/v1/events): pages change as events arrive, with
// no polling while the stream is up; when the stream cannot be had, the badge says so and
// pages poll as before.

import assert from 'node:assert/strict';
import { before, test } from 'node:test';

import {
  API, api, assertClean, clip, createUser, newPage, profileNamed, signIn, transform, unique,
  uploadClip, waitFor,
} from './lib/harness.mjs';

let user;
let input;
let copy;

before(async () => {
  user = await createUser({ first_name: 'Liv', last_name: 'Events' });
  input = await uploadClip(user, await clip('live-input', 1, 320, 240), { title: unique('Live input') });
  copy = await profileNamed(user, 'File Copy');
});

async function go(page, hash, heading) {
  await page.evaluate((h) => { window.location.hash = h; }, hash);
  if (heading) await page.getByRole('heading', { level: 1, name: heading }).waitFor();
}

/** A task no unit will run (nobody consumes its queue): it waits PENDING until revoked. */
async function waitingTask() {
  return transform(user, { media: input.id, profile: copy.id, filename: `${unique('wait')}.mp4`, queue: unique('nobody') });
}

/** Count the page's GETs of `path` from now on. */
function countGets(page, path) {
  const seen = { count: 0 };
  page.on('request', (request) => {
    if (request.method() === 'GET' && new URL(request.url()).pathname === path) seen.count += 1;
  });
  return seen;
}

test('with the stream up, pages follow events and do not poll', async () => {
  const page = await newPage();
  const streams = [];
  page.on('request', (request) => { if (request.url().startsWith(`${API}/events`)) streams.push(request); });
  await signIn(page, user.mail, user.secret);
  const badge = page.locator('#live-state');
  await waitFor(async () => (await badge.textContent()) === 'Live', { what: 'the badge to say Live' });
  assert.equal(await page.evaluate(() => document.documentElement.dataset.live), 'live');
  assert.equal(streams.length, 1, 'one stream for the tab');
  assert.match(streams[0].headers().authorization ?? '', /^Bearer /, 'the stream carries the token');

  // The library, with nothing PENDING, never polled; an upload from elsewhere shows anyway.
  await go(page, '#/medias', 'Medias');
  const title = unique('Arrives live');
  await uploadClip(user, await clip('live-other', 1, 320, 240), { title });
  await page.getByText(title).first().waitFor({ timeout: 5000 });

  // A waiting task's page: no GET of it while nothing happens...
  const task = await waitingTask();
  await go(page, `#/tasks/${task.id}`, /./);
  await page.getByText('PENDING').first().waitFor();
  const gets = countGets(page, `/api/v1/transform/tasks/${task.id}`);
  await page.waitForTimeout(4000);
  assert.ok(gets.count <= 1, `the page polled the task ${gets.count} times in 4 s`);
  // ...and its revocation elsewhere shows at once.
  await api('DELETE', `/transform/tasks/${task.id}`, { auth: user, expect: 200 });
  await page.getByText('REVOKED').first().waitFor({ timeout: 3000 });
  assertClean(page);
});

test('without the stream, the badge says Polling and pages poll', async () => {
  const page = await newPage();
  await page.route(`${API}/events**`, (route) => route.abort());
  await signIn(page, user.mail, user.secret);
  const badge = page.locator('#live-state');
  await waitFor(async () => (await badge.textContent()) === 'Polling', { what: 'the badge to say Polling' });
  assert.equal(await page.evaluate(() => document.documentElement.dataset.live), 'down');

  const task = await waitingTask();
  await go(page, `#/tasks/${task.id}`, /./);
  await page.getByText('PENDING').first().waitFor();
  const gets = countGets(page, `/api/v1/transform/tasks/${task.id}`);
  await page.waitForTimeout(4000);
  assert.ok(gets.count >= 2, `the page polled the task only ${gets.count} times in 4 s`);
  await api('DELETE', `/transform/tasks/${task.id}`, { auth: user, expect: 200 });
  await page.getByText('REVOKED').first().waitFor({ timeout: 5000 });
  // The refused stream shows in the console as a failed load: expected here.
  assertClean(page, { allow: [/Failed to load resource/, /ERR_FAILED/] });
});
