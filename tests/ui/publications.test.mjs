// Publications in the browser: publish a READY media from the page, see SUCCESS and the
// public URL, play that URL in the page, unpublish through the dialog, see REVOKED live and
// the URL answer 404.

import assert from 'node:assert/strict';
import { before, test } from 'node:test';

import {
  api, assertClean, axeScan, clip, createUser, newPage, screenshot, signIn, unique, uploadClip, waitFor, waitForTask,
} from './lib/harness.mjs';

let user;
let media;

before(async () => {
  user = await createUser({ first_name: 'Paul', last_name: 'Publisher' });
  media = await uploadClip(user, await clip('pub-input', 4, 640, 360), { title: unique('To publish') });
});

async function go(page, hash, heading) {
  await page.evaluate((h) => { window.location.hash = h; }, hash);
  if (heading) await page.getByRole('heading', { level: 1, name: heading }).waitFor();
}

test('publish from the page, play the public URL, unpublish: REVOKED and the URL 404s', async () => {
  const page = await newPage();
  await signIn(page, user.mail, user.secret);
  await page.evaluate(() => { window.__sameDocument = 'still here'; });
  await go(page, '#/publications', 'Publications');
  const form = page.locator('section', { has: page.getByRole('heading', { name: 'Publish a READY media' }) });
  await form.getByLabel('Find a media').fill(media.metadata.title);
  const select = form.getByLabel('READY media', { exact: true });
  await waitFor(async () => (await select.locator('option').count()) === 2, { what: 'the search to narrow the picker to one media' });
  await select.selectOption(media.id);
  await screenshot(page, 'publications-form');
  await axeScan(page);
  await form.getByRole('button', { name: 'Publish', exact: true }).click();
  await page.waitForURL(/#\/publications\/[0-9a-f-]{36}$/);
  const id = page.url().split('/').pop();

  // SUCCESS arrives live, with the public URL as a link and in a player.
  await page.locator('.facts .badge', { hasText: 'SUCCESS' }).waitFor({ timeout: 60_000 });
  const task = (await api('GET', `/publisher/tasks/${id}`, { auth: user, expect: 200 })).body;
  assert.equal(task.status, 'SUCCESS');
  assert.equal(task.media_id, media.id);
  const links = page.locator(`a[href="${task.publish_uri}"]`);
  assert.ok(await links.count() >= 1, 'the public URL is a link');
  assert.equal(await links.first().textContent(), task.publish_uri);
  const video = page.locator('.player video');
  await video.waitFor();
  assert.equal(await video.evaluate((v) => v.currentSrc || v.src), task.publish_uri, 'the player plays the public URL');
  await video.evaluate((v) => { v.muted = true; return v.play(); });
  await waitFor(() => video.evaluate((v) => v.readyState >= 2 && v.currentTime > 0.3), { what: 'the public URL to play', timeoutMs: 20_000 });
  const first = await video.evaluate((v) => v.currentTime);
  await waitFor(async () => (await video.evaluate((v) => v.currentTime)) > first + 0.3, { what: 'currentTime to advance' });
  assert.equal((await fetch(task.publish_uri, { method: 'HEAD' })).status, 200, 'the URL answers while published');
  await screenshot(page, 'publication');
  await axeScan(page);

  // The list shows it, live, with its URL.
  await go(page, '#/publications?status=SUCCESS', 'Publications');
  const row = page.locator(`tr[data-id="${id}"]`);
  await row.waitFor();
  assert.equal(await row.locator('.badge').textContent(), 'SUCCESS');
  assert.equal(await row.locator('td[data-label="Public URL"] a').getAttribute('href'), task.publish_uri);
  assert.equal(await row.getByRole('link', { name: media.metadata.title, exact: true }).getAttribute('href'), `#/publications/${id}`);
  await screenshot(page, 'publications');
  await axeScan(page);

  // Unpublish from the detail: the dialog first, then REVOKING (if the page sees it) and REVOKED.
  await row.getByRole('link', { name: media.metadata.title, exact: true }).click();
  await page.waitForURL(new RegExp(`#/publications/${id}$`));
  await page.getByRole('button', { name: 'Unpublish this media' }).click();
  const dialog = page.getByRole('dialog', { name: 'Unpublish the media?' });
  await dialog.waitFor();
  assert.match(await dialog.textContent(), new RegExp(task.publish_uri.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
  await dialog.getByRole('button', { name: 'Unpublish', exact: true }).click();
  const seen = new Set();
  await waitFor(async () => {
    // The badge and the note are drawn together: read them in one snapshot, or the page may
    // move on to REVOKED between the two reads.
    const { status, alerts } = await page.evaluate(() => ({
      status: document.querySelector('.facts .badge')?.textContent,
      alerts: [...document.querySelectorAll('.alert')].map((a) => a.textContent),
    }));
    seen.add(status);
    if (status === 'REVOKING') {
      const note = alerts.find((a) => a.includes('REVOKING'));
      assert.ok(note, `REVOKING without its note: ${alerts.join(' | ')}`);
      assert.match(note, /removing/);
    }
    return status === 'REVOKED';
  }, { timeoutMs: 30_000, intervalMs: 100, what: 'REVOKED on the page' });
  assert.ok([...seen].every((s) => ['SUCCESS', 'REVOKING', 'REVOKED'].includes(s)), [...seen].join(', '));
  await page.getByText('the URL answers 404').waitFor();
  assert.equal(await page.locator('.player video').count(), 0, 'the player is gone');
  assert.ok(await page.getByRole('button', { name: 'Unpublish this media' }).isHidden());
  assert.equal((await api('GET', `/publisher/tasks/${id}`, { auth: user, expect: 200 })).body.status, 'REVOKED');
  assert.equal((await fetch(task.publish_uri)).status, 404, 'the URL no longer answers');
  await screenshot(page, 'publication-revoked');
  assert.equal(await page.evaluate(() => window.__sameDocument), 'still here', 'no reload');
  assertClean(page);
  await page.context().close();
});

test('publishing what is already published shows the API\'s 409 at the media picker', async () => {
  const page = await newPage();
  await signIn(page, user.mail, user.secret);
  const other = await uploadClip(user, await clip('pub-twice', 2, 320, 240), { title: unique('Twice') });
  const published = (await api('POST', '/publisher/tasks', { auth: user, expect: 201, body: { media_id: other.id } })).body;
  await waitForTask(user, 'publisher', published.id, 'SUCCESS');
  const direct = await api('POST', '/publisher/tasks', { auth: user, expect: 409, body: { media_id: other.id } });
  await go(page, `#/publications?media=${other.id}`, 'Publications');
  const form = page.locator('section', { has: page.getByRole('heading', { name: 'Publish a READY media' }) });
  const select = form.getByLabel('READY media', { exact: true });
  await waitFor(async () => (await select.inputValue()) === other.id, { what: 'the media from the address to be picked' });
  await form.getByRole('button', { name: 'Publish', exact: true }).click();
  const error = select.locator('xpath=ancestor::div[contains(@class, "field")][1]').locator('.field-error');
  await error.waitFor({ state: 'visible' });
  assert.equal(await error.textContent(), direct.body.error.message);
  assert.equal(page.url().endsWith(`#/publications?media=${other.id}`), true, 'still on the form');
  assertClean(page, { allow: [/status of 409 .*\/api\/v1\/publisher\/tasks/] });
  await page.context().close();
});
