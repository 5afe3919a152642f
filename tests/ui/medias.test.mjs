// The medias pages as an operator uses them: uploads (picker, drag-and-drop, cancel, a
// refusal), the list (search, filter, sort, paging kept in the address bar, fast with many
// medias), the detail (probe, metadata merge patch, lineage, a refused delete), and playback
// of MP4, HLS (hls.js) and DASH (dash.js) outputs in the page.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { copyFileSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { before, test } from 'node:test';

import {
  ORCHESTRA, WORKDIR, api, assertClean, axeScan, clip, createUser, mintToken, newPage,
  publish, screenshot, signIn, transform, unique, uploadClip, waitFor, waitForTask,
} from './lib/harness.mjs';

/** How many medias the paging test registers (OSCIED_UI_MANY_MEDIAS=10000 for the real test
 * of the "10,000 medias, interactive within 1 s"; the default keeps the run short). */
const MANY = Number(process.env.OSCIED_UI_MANY_MEDIAS || 120);
const XSS = '<img src=x onerror=alert(1)>';
/** The console's report of an answer a test provokes on purpose. */
/** A size as the list shows it: 1 decimal below 100 KiB. */
const kib = (n) => `${(n / 1024).toFixed(n / 1024 >= 100 ? 0 : 1)} KiB`;
const refused = (status) => new RegExp(`Failed to load resource: the server responded with a status of ${status}`);

let ada;
let clipA;
let clipB;

before(async () => {
  ada = await createUser({ first_name: 'Ada', last_name: 'Medias' });
  clipA = await clip('medias-a', 3, 320, 180);
  clipB = await clip('medias-b', 2, 320, 180);
});

/** A signed-in page on `hash` (`/medias`), waiting for the list or the detail to show. */
async function open(user, hash, viewport) {
  const page = await newPage(viewport);
  await signIn(page, user.mail, user.secret);
  await page.goto(`${ORCHESTRA}/#${hash}`);
  return page;
}

async function listShown(page) {
  await page.locator('.media-list:not([aria-busy]) :is(table, .empty, .alert)').first().waitFor();
}

/** The list's titles, in order. */
function titles(page) {
  return page.locator('.media-list tbody td.title-cell').allTextContents();
}

/** The medias `user` owns, newest first, straight from the API. */
async function mediasOf(user, query = '') {
  return (await api('GET', `/medias?limit=1000${query}`, { auth: user, expect: 200 })).body;
}

/** Watch every upload row's progress value in the page (set on each change), by row name. */
async function recordProgress(page) {
  await page.evaluate(() => {
    window.progressSeen = {};
    const record = () => {
      for (const row of document.querySelectorAll('.upload')) {
        const name = row.querySelector('.upload-name').textContent;
        const value = row.querySelector('progress').value;
        const seen = (window.progressSeen[name] ??= []);
        if (seen[seen.length - 1] !== value) seen.push(value);
      }
    };
    new MutationObserver(record).observe(document.querySelector('.upload-panel'), { subtree: true, childList: true, attributes: true, characterData: true });
  });
}

async function uploadsSettled(page, count) {
  await page.waitForFunction((n) => {
    const rows = [...document.querySelectorAll('.upload')];
    return rows.length === n && rows.every((r) => ['done', 'failed', 'cancelled'].includes(r.dataset.state));
  }, count, { timeout: 60_000 });
}

test('two files picked at once upload side by side to 100 %, join the list READY, with thumbnails', async () => {
  const user = await createUser();
  const page = await open(user, '/medias');
  await listShown(page);
  assert.equal(await page.locator('.media-list .empty').textContent(), 'No media matches.');
  await recordProgress(page);
  // The picker is a real button the keyboard reaches; its input takes the files.
  await page.getByRole('button', { name: 'Choose files…' }).focus();
  await page.locator('input[type=file]').setInputFiles([clipA, clipB]);
  await uploadsSettled(page, 2);
  const rows = await page.$$eval('.upload', (els) => els.map((e) => ({
    name: e.querySelector('.upload-name').textContent,
    state: e.dataset.state,
    value: e.querySelector('progress').value,
    result: e.querySelector('.upload-result').textContent,
    link: e.querySelector('.upload-result a')?.getAttribute('href'),
  })));
  const seen = await page.evaluate(() => window.progressSeen);
  const medias = (await mediasOf(user)).items;
  assert.equal(medias.length, 2, 'both files became medias');
  for (const [file, row] of [[clipA, rows[0]], [clipB, rows[1]]]) {
    const name = basename(file);
    const media = medias.find((m) => m.metadata.title === name);
    assert.ok(media, `a media titled ${name}`);
    assert.equal(media.size, statSync(file).size);
    assert.deepEqual(row, { name, state: 'done', value: 100, result: `READY ${name}`, link: `#/medias/${media.id}` });
    assert.equal(seen[name].at(-1), 100, `${name}'s bar ended at 100 %: ${seen[name]}`);
    assert.ok(seen[name].every((v, i) => i === 0 || v >= seen[name][i - 1]), `${name}'s bar only went forward: ${seen[name]}`);
  }
  // The finished uploads join the list without a reload, each with its thumbnail.
  await page.waitForFunction(() => document.querySelectorAll('.media-list tbody tr').length === 2);
  assert.deepEqual((await titles(page)).sort(), [basename(clipA), basename(clipB)].sort());
  await page.waitForFunction(() => {
    const imgs = [...document.querySelectorAll('.media-list img.thumb')];
    return imgs.length === 2 && imgs.every((i) => i.complete && i.naturalWidth > 0);
  }, null, { timeout: 20_000 });
  const row = page.locator('.media-list tbody tr', { hasText: basename(clipA) });
  assert.deepEqual(await row.locator('td').allTextContents(), [
    '', basename(clipA), '0:03', '320×180', kib(statSync(clipA).size), 'READY',
    await row.locator('td.created-cell').textContent(),
  ]);
  assertClean(page);
  await page.context().close();
});

test('a file dropped on the drop zone uploads; a refused file shows the API\'s message on its row', async () => {
  const user = await createUser();
  const page = await open(user, '/medias');
  await listShown(page);
  const bytes = readFileSync(clipB).toString('base64');
  // Build the DataTransfer in the page, as a drag from the desktop would bring it.
  await page.evaluate(({ b64, name }) => {
    const data = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const transfer = new DataTransfer();
    transfer.items.add(new File([data], name, { type: 'video/mp4' }));
    transfer.items.add(new File(['this is not a video\n'], 'notes.txt', { type: 'text/plain' }));
    const zone = document.querySelector('[data-dropzone]');
    for (const type of ['dragenter', 'dragover', 'drop']) {
      zone.dispatchEvent(new DragEvent(type, { dataTransfer: transfer, bubbles: true, cancelable: true }));
    }
  }, { b64: bytes, name: 'dropped.mp4' });
  await uploadsSettled(page, 2);
  const dropped = page.locator('.upload', { hasText: 'dropped.mp4' });
  assert.equal(await dropped.getAttribute('data-state'), 'done');
  const notes = page.locator('.upload', { hasText: 'notes.txt' });
  assert.equal(await notes.getAttribute('data-state'), 'failed');
  // The refusal is the API's own words, with its status, on that file's row only.
  const answer = await api('POST', '/medias', {
    auth: user,
    form: (() => { const f = new FormData(); f.set('title', 'x'); f.set('file', new Blob(['this is not a video\n']), 'notes.txt'); return f; })(),
    expect: 422,
  });
  assert.equal(await notes.locator('.field-error').textContent(), `${answer.body.error.message} (422 unreadable_media)`);
  assert.equal(await dropped.locator('.field-error').count(), 0);
  const medias = (await mediasOf(user)).items;
  assert.deepEqual(medias.map((m) => m.metadata.title), ['dropped.mp4']);
  await page.waitForFunction(() => document.querySelectorAll('.media-list tbody tr').length === 1);
  // Finished rows go away on request; the list stays.
  await page.getByRole('button', { name: 'Clear finished' }).click();
  assert.equal(await page.locator('.upload').count(), 0);
  assertClean(page, { allow: [refused(422)] });
  await page.context().close();
});

test('files over the upload limit show the API\'s 413 on their rows and leave nothing', async () => {
  const limit = Number(process.env.OSCIED_UI_MAX_UPLOAD_BYTES);
  assert.ok(limit > 0, 'tests/tests/ui.rs sets OSCIED_UI_MAX_UPLOAD_BYTES');
  const user = await createUser();
  const page = await open(user, '/medias');
  await listShown(page);
  // One announces a length past the limit (refused before a byte is read), one is just over
  // it (refused as it streams past the limit).
  const dir = join(tmpdir(), unique('big'));
  mkdirSync(dir, { recursive: true });
  const declared = join(dir, 'declared-too-big.mp4');
  const streamed = join(dir, 'streamed-too-big.mp4');
  writeFileSync(declared, randomBytes(limit + 4 * 1024 * 1024));
  writeFileSync(streamed, randomBytes(limit + 512 * 1024));
  await page.locator('input[type=file]').setInputFiles([declared, streamed]);
  for (const name of ['declared-too-big.mp4', 'streamed-too-big.mp4']) {
    const row = page.locator('.upload', { hasText: name });
    const error = row.locator('.field-error');
    await error.waitFor({ timeout: 30_000 });
    assert.match(await error.textContent(), new RegExp(`limit of ${limit} bytes \\(413 payload_too_large\\)`), name);
  }
  assert.equal((await mediasOf(user, '&status=PENDING,READY,DELETED')).total, 0, 'nothing stored');
  assertClean(page, { allow: [refused(413)] });
  await page.context().close();
});

test('Cancel stops an upload in flight and nothing is stored', async () => {
  const user = await createUser();
  const page = await open(user, '/medias');
  await listShown(page);
  // A slow line (256 KiB/s up) and a file big enough to still be sending when cancelled.
  const big = await clip('medias-big', 4, 1280, 720, { args: ['-b:v', '8M', '-preset', 'ultrafast'] });
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: 256 * 1024 });
  await page.locator('input[type=file]').setInputFiles(big);
  const row = page.locator('.upload');
  await page.waitForFunction(() => {
    const p = document.querySelector('.upload progress');
    return p && p.value > 0 && p.value < 100;
  }, null, { timeout: 20_000 });
  const cancel = row.getByRole('button', { name: `Cancel the upload of ${basename(big)}` });
  await cancel.click();
  await page.waitForSelector('.upload[data-state=cancelled]');
  assert.equal(await row.locator('.upload-state').textContent(), 'Cancelled');
  assert.equal(await cancel.isHidden(), true, 'nothing left to cancel');
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
  await new Promise((done) => setTimeout(done, 500));
  assert.equal((await mediasOf(user, '&status=PENDING,READY,DELETED')).total, 0);
  assertClean(page);
  await page.context().close();
});

test('a hostile title is text in the list and the detail; nothing runs', async () => {
  const media = await uploadClip(ada, clipB, { title: XSS });
  const page = await open(ada, `/medias?q=${encodeURIComponent('onerror=alert')}`);
  await listShown(page);
  assert.deepEqual(await titles(page), [XSS]);
  await page.locator('.media-list tbody a', { hasText: XSS }).click();
  await page.waitForSelector('#probe-title');
  assert.equal(await page.locator('h1').textContent(), XSS);
  await page.waitForFunction((t) => document.title === t, `${XSS} · OSCIED`);
  assert.equal(await page.locator('.facts dd').first().textContent(), XSS);
  assert.equal(await page.locator('img[src=x]').count(), 0);
  assert.equal(page.url(), `${ORCHESTRA}/#/medias/${media.id}`);
  assertClean(page);
  assert.deepEqual(page.dialogs, []);
  await page.context().close();
});

test('search, status and sort live in the address bar: reload and deep links keep them', async () => {
  const user = await createUser();
  const small = await uploadClip(user, clipB, { title: 'Harbour at dawn' });
  const large = await uploadClip(user, clipA, { title: 'Harbour at dusk' });
  const other = await uploadClip(user, clipB, { title: 'Mountain pass' });
  await api('DELETE', `/medias/${other.id}`, { auth: user, expect: 204 });
  const page = await open(user, '/medias');
  await listShown(page);
  assert.deepEqual(await titles(page), ['Harbour at dusk', 'Harbour at dawn']);
  await page.getByLabel('Search titles').fill('dawn');
  await page.waitForFunction(() => location.hash === '#/medias?q=dawn');
  await page.waitForFunction(() => document.querySelectorAll('.media-list tbody tr').length === 1);
  assert.deepEqual(await titles(page), ['Harbour at dawn']);
  await page.reload();
  await listShown(page);
  assert.equal(await page.getByLabel('Search titles').inputValue(), 'dawn');
  assert.deepEqual(await titles(page), ['Harbour at dawn']);
  await page.getByLabel('Search titles').fill('');
  await page.getByLabel('Status').selectOption('DELETED');
  await page.waitForFunction(() => location.hash === '#/medias?status=DELETED');
  await listShown(page);
  assert.deepEqual(await titles(page), ['Mountain pass']);
  assert.equal(await page.locator('.media-list tbody .badge').textContent(), 'DELETED');
  await page.getByLabel('Status').selectOption('READY');
  await page.getByLabel('Sort').selectOption('size');
  await page.waitForFunction(() => location.hash === '#/medias?status=READY&sort=size');
  await listShown(page);
  assert.deepEqual(await titles(page), ['Harbour at dawn', 'Harbour at dusk'], `smallest first (${small.size} < ${large.size})`);
  // A deep link with every parameter, as the overview's links and lineage make them.
  await page.goto(`${ORCHESTRA}/#/medias?q=harbour&status=READY&sort=-size`);
  await page.reload();
  await listShown(page);
  assert.deepEqual(await titles(page), ['Harbour at dusk', 'Harbour at dawn']);
  assert.equal(await page.getByLabel('Sort').inputValue(), '-size');
  assert.equal(await page.getByLabel('Status').inputValue(), 'READY');
  assertClean(page);
  await page.context().close();
});

/** Register `count` copies of `file` for `user` through the API (a file under uploads/ each). */
async function register(user, file, count) {
  const token = await mintToken(user);
  const uploads = join(WORKDIR, 'oscied-data', 'storage', 'uploads');
  mkdirSync(uploads, { recursive: true });
  let next = 0;
  const worker = async () => {
    for (;;) {
      const i = next;
      next += 1;
      if (i >= count) return;
      const name = `${unique('seed')}.mp4`;
      copyFileSync(file, join(uploads, name));
      await api('POST', '/medias', { auth: { token }, body: { uri: `uploads/${name}`, metadata: { title: `Seed ${String(i).padStart(5, '0')}` } }, expect: 201 });
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
}

test(`with ${MANY} medias the list pages by 50 and is interactive within 1 s`, { timeout: 1_800_000 }, async () => {
  const user = await createUser();
  const tiny = await clip('medias-tiny', 1, 64, 36, { audio: false, fps: 10 });
  const started = Date.now();
  await register(user, tiny, MANY);
  console.log(`registered ${MANY} medias in ${Date.now() - started} ms`);
  const page = await newPage();
  await signIn(page, user.mail, user.secret);
  const asked = [];
  page.on('request', (r) => { if (r.url().includes('/api/v1/medias?')) asked.push(new URL(r.url()).searchParams); });
  // Warm the browser's cache of the UI's files with another page, as an operator's tab has.
  await page.goto(`${ORCHESTRA}/#/units`);
  await page.locator('h1').waitFor();
  const timings = [];
  for (let i = 0; i < 3; i += 1) {
    await page.goto('about:blank');
    const t0 = Date.now();
    await page.goto(`${ORCHESTRA}/#/medias`);
    await page.waitForFunction(() => document.querySelectorAll('.media-list tbody tr').length === 50);
    const rendered = Date.now() - t0;
    // Interactive: the search answers.
    await page.getByLabel('Search titles').fill('Seed 00042');
    await page.waitForFunction(() => document.querySelectorAll('.media-list tbody tr').length === 1);
    timings.push({ rendered, searched: Date.now() - t0 });
  }
  console.log(`medias page with ${MANY} medias: ${JSON.stringify(timings)} (ms from page.goto)`);
  const best = Math.min(...timings.map((t) => t.rendered));
  assert.ok(best < 1000, `the list rendered in ${best} ms`);
  assert.ok(asked.every((q) => q.get('limit') === '50'), 'every list call asks for one page');
  // Paging: Next, the address bar, a reload, and the last page.
  await page.getByLabel('Search titles').fill('');
  await page.waitForFunction(() => document.querySelectorAll('.media-list tbody tr').length === 50);
  assert.equal(await page.locator('.pager .muted').textContent(), `1–50 of ${MANY}`);
  await page.getByRole('button', { name: 'Next page' }).click();
  await page.waitForFunction(() => location.hash === '#/medias?skip=50');
  await page.waitForFunction(() => document.querySelector('.pager .muted')?.textContent.startsWith('51–'));
  const second = (await api('GET', '/medias?limit=50&skip=50', { auth: user, expect: 200 })).body.items.map((m) => m.metadata.title);
  assert.deepEqual(await titles(page), second);
  await page.reload();
  await page.waitForFunction(() => document.querySelector('.pager .muted')?.textContent.startsWith('51–'));
  assert.deepEqual(await titles(page), second);
  const lastSkip = Math.floor((MANY - 1) / 50) * 50;
  await page.goto(`${ORCHESTRA}/#/medias?sort=title&skip=${lastSkip}`);
  await page.reload();
  await page.waitForFunction((s) => document.querySelector('.pager .muted')?.textContent.startsWith(`${s + 1}–`), lastSkip);
  assert.equal((await titles(page)).at(-1), `Seed ${String(MANY - 1).padStart(5, '0')}`);
  assert.equal(await page.getByRole('button', { name: 'Next page' }).isDisabled(), true);
  assertClean(page);
  await page.context().close();
});

test('the detail shows the probe, round-trips a metadata merge patch and shows a 422 by the field', async () => {
  const media = await uploadClip(ada, clipA, { title: 'Detail clip', metadata: { lang: 'en', drop: 'me' } });
  const page = await open(ada, `/medias/${media.id}`);
  await page.waitForSelector('#probe-title');
  const streams = page.locator('.streams tbody tr');
  assert.equal(await streams.count(), 2);
  assert.deepEqual(await streams.nth(0).locator('td').allTextContents(), ['0', 'video', 'h264', '320×180', '25 fps', await streams.nth(0).locator('td').nth(5).textContent(), '—', '—', '3.00 s']);
  assert.deepEqual((await streams.nth(1).locator('td').allTextContents()).slice(0, 4), ['1', 'audio', 'aac', '—']);
  assert.equal(await streams.nth(1).locator('td').nth(6).textContent(), '2');
  assert.equal(await streams.nth(1).locator('td').nth(7).textContent(), '48000 Hz');
  const editor = page.getByLabel('Metadata (JSON object)');
  assert.deepEqual(JSON.parse(await editor.inputValue()), { title: 'Detail clip', lang: 'en', drop: 'me' });
  // Change one key, remove one, add one: a merge patch with null for the removed key.
  const patches = [];
  page.on('request', (r) => { if (r.method() === 'PATCH') patches.push(r.postDataJSON()); });
  await editor.fill(JSON.stringify({ title: 'Detail clip, renamed', lang: 'fr', tags: ['a', 'b'] }));
  await page.getByRole('button', { name: 'Save metadata' }).click();
  await page.locator('.metadata-form .alert.ok', { hasText: 'Saved.' }).waitFor();
  assert.deepEqual(patches, [{ metadata: { title: 'Detail clip, renamed', lang: 'fr', drop: null, tags: ['a', 'b'] } }]);
  assert.equal(await page.locator('h1').textContent(), 'Detail clip, renamed');
  await page.reload();
  await page.waitForSelector('#probe-title');
  assert.deepEqual(JSON.parse(await editor.inputValue()), { title: 'Detail clip, renamed', lang: 'fr', tags: ['a', 'b'] });
  const stored = (await api('GET', `/medias/${media.id}`, { auth: ada, expect: 200 })).body.metadata;
  assert.deepEqual(stored, { title: 'Detail clip, renamed', lang: 'fr', tags: ['a', 'b'] });
  // The API's refusal shows under the field; JSON that does not parse never leaves the page.
  await editor.fill(JSON.stringify({ title: '   ', lang: 'fr' }));
  await page.getByRole('button', { name: 'Save metadata' }).click();
  const error = page.locator('.metadata-form .field-error');
  await error.waitFor();
  const refusal = await api('PATCH', `/medias/${media.id}`, { auth: ada, body: { metadata: { title: '   ' } }, expect: 422 });
  assert.equal(await error.textContent(), refusal.body.error.message);
  assert.equal(await editor.getAttribute('aria-invalid'), 'true');
  await editor.fill('{"title": ');
  patches.length = 0;
  await page.getByRole('button', { name: 'Save metadata' }).click();
  assert.match(await error.textContent(), /^This is not JSON: /);
  assert.deepEqual(patches, []);
  assertClean(page, { allow: [refused(422)] });
  await page.context().close();
});

test('lineage and tasks: an output links its parent, the parent lists it and the task; an HLS output plays through hls.js', async () => {
  const source = await uploadClip(ada, clipB, { title: 'Lineage source' });
  const task = await transform(ada, { media: source.id, profile: 'HLS 720p', filename: 'lineage.m3u8', title: 'Lineage HLS' });
  await waitForTask(ada, 'transform', task.id, 'SUCCESS');
  const page = await open(ada, `/medias/${source.id}`);
  await page.waitForSelector('#lineage-title');
  const children = page.locator('#lineage-title ~ div li');
  await children.first().waitFor();
  assert.deepEqual(await children.allTextContents(), ['Lineage HLS READY']);
  const row = page.locator('#tasks-title ~ div tbody tr');
  await row.first().waitFor();
  assert.equal(await row.count(), 1);
  assert.deepEqual(await row.locator('td').evaluateAll((tds) => tds.slice(0, 5).map((td) => td.textContent)), [task.id.slice(0, 8), 'input', task.media_out_id.slice(0, 8), 'HLS 720p', 'SUCCESS']);
  assert.equal(await row.locator('a').first().getAttribute('href'), `#/tasks/${task.id}`);
  await children.locator('a').click();
  await page.waitForFunction((id) => location.hash === `#/medias/${id}`, task.media_out_id);
  await page.waitForSelector('#lineage-title');
  // The parent shows as its id at once, then by its title once fetched.
  const parent = page.locator('#lineage-title ~ dl a').first();
  assert.equal(await parent.getAttribute('href'), `#/medias/${source.id}`);
  await page.locator('#lineage-title ~ dl a', { hasText: 'Lineage source' }).waitFor();
  // The package plays from its files through hls.js (chromium says "maybe" to native HLS:
  // the player prefers hls.js wherever Media Source Extensions exist).
  const player = page.locator('.player');
  assert.equal(await player.getAttribute('data-kind'), 'hls');
  await page.waitForFunction(() => document.querySelector('.player')?.dataset.engine === 'hls.js');
  await playsInPage(page);
  assert.match(await page.locator('video').evaluate((v) => v.currentSrc), /^blob:/);
  await screenshot(page, 'media-hls');
  // The list honours lineage links: the children of the source, removable as a filter.
  await page.goto(`${ORCHESTRA}/#/medias?parent_id=${source.id}&status=PENDING,READY,DELETED`);
  await listShown(page);
  assert.deepEqual(await titles(page), ['Lineage HLS']);
  assert.equal(await page.getByLabel('Status').inputValue(), 'PENDING,READY,DELETED');
  await page.getByRole('button', { name: `Remove the filter: Made from ${source.id}` }).click();
  await page.waitForFunction(() => location.hash === '#/medias?status=PENDING%2CREADY%2CDELETED');
  await page.waitForFunction(() => document.querySelectorAll('.media-list tbody tr').length > 1);
  assertClean(page);
  await page.context().close();
});

/** The page's video gets data, then its clock moves once played. */
async function playsInPage(page) {
  await page.waitForFunction(() => {
    const v = document.querySelector('.player video');
    return v && v.readyState >= 2;
  }, null, { timeout: 30_000 });
  const start = await page.evaluate(async () => {
    const v = document.querySelector('.player video');
    v.muted = true;
    await v.play();
    return v.currentTime;
  });
  await page.waitForFunction((t) => document.querySelector('.player video').currentTime > t + 0.5, start, { timeout: 15_000 });
  assert.equal(await page.locator('.player-error').isHidden(), true, await page.locator('.player-error').textContent());
}

test('an MP4 media plays in the page, DASH through dash.js; a player error shows as text', async () => {
  const mp4 = await uploadClip(ada, clipA, { title: 'Plays as MP4' });
  const page = await open(ada, `/medias/${mp4.id}`);
  await page.waitForSelector('.player video');
  assert.equal(await page.locator('.player').getAttribute('data-engine'), 'native');
  assert.equal(await page.locator('.player video').getAttribute('src'), `/api/v1/medias/${mp4.id}/download`);
  await playsInPage(page);
  const download = page.getByRole('link', { name: 'Download', exact: true });
  assert.equal(await download.getAttribute('href'), `/api/v1/medias/${mp4.id}/download`);
  assert.equal(await download.getAttribute('download'), basename(clipA));
  assert.equal(await page.getByRole('link', { name: 'Transform', exact: true }).getAttribute('href'), `#/tasks/new?media=${mp4.id}`);

  const task = await transform(ada, { media: mp4.id, profile: 'DASH 720p', filename: 'plays.mpd', title: 'Plays as DASH' });
  await waitForTask(ada, 'transform', task.id, 'SUCCESS');
  await page.goto(`${ORCHESTRA}/#/medias/${task.media_out_id}`);
  await page.waitForFunction(() => document.querySelector('.player')?.dataset.engine === 'dash.js');
  await playsInPage(page);

  // Errors of each engine show under the video, in words.
  await page.evaluate(async () => {
    const { player } = await import('/js/player.js');
    const box = document.createElement('div');
    box.id = 'broken';
    box.append(
      player('/api/v1/medias/00000000-0000-4000-8000-000000000000/files/gone.m3u8', { filename: 'gone.m3u8' }),
      player('/api/v1/medias/00000000-0000-4000-8000-000000000000/download', { filename: 'gone.mp4' }),
    );
    document.querySelector('main').append(box);
  });
  const errors = page.locator('#broken .player-error');
  await page.waitForFunction(() => [...document.querySelectorAll('#broken .player-error')].every((e) => !e.hidden), null, { timeout: 20_000 });
  assert.match(await errors.nth(0).textContent(), /^Cannot play: HLS networkError: manifestLoadError \(HTTP 404\)/);
  assert.match(await errors.nth(1).textContent(), /^Cannot play: this browser cannot play this format, or the file could not be fetched/);
  assertClean(page, { allow: [refused(404)] });
  await page.context().close();
});

test('deleting a published media shows the 409 naming the publication; unpublished, it deletes', async () => {
  const media = await uploadClip(ada, clipB, { title: 'Held by a publication' });
  const publication = await publish(ada, media.id);
  await waitForTask(ada, 'publisher', publication.id, 'SUCCESS');
  const page = await open(ada, `/medias/${media.id}`);
  const pubRow = page.locator('#pubs-title ~ div tbody tr');
  await pubRow.first().waitFor();
  const published = (await api('GET', `/publisher/tasks/${publication.id}`, { auth: ada, expect: 200 })).body;
  assert.deepEqual(await pubRow.locator('td').evaluateAll((tds) => tds.slice(0, 3).map((td) => td.textContent)), [publication.id.slice(0, 8), 'SUCCESS', published.publish_uri]);
  assert.equal(await pubRow.locator('a.url').getAttribute('href'), published.publish_uri);
  await page.getByRole('button', { name: 'Delete' }).click();
  const dialog = page.getByRole('dialog', { name: 'Delete this media?' });
  await dialog.getByRole('button', { name: 'Delete' }).click();
  const alert = page.locator('.message-slot .alert.error');
  await alert.waitFor();
  const refusal = await api('DELETE', `/medias/${media.id}`, { auth: ada, expect: 409 });
  assert.equal(await alert.textContent(), `Not deleted: ${refusal.body.error.message} (409 conflict)`);
  assert.match(refusal.body.error.message, new RegExp(publication.id));
  assert.equal(await alert.getByRole('link', { name: publication.id }).getAttribute('href'), `#/publications/${publication.id}`);
  await screenshot(page, 'media-detail', { fullPage: true });
  await axeScan(page);
  await page.emulateMedia({ colorScheme: 'dark' });
  await axeScan(page);
  await page.emulateMedia({ colorScheme: 'light' });

  // Escape cancels the confirmation; once unpublished, Delete goes through.
  await api('DELETE', `/publisher/tasks/${publication.id}`, { auth: ada, expect: [200, 202] });
  await waitForTask(ada, 'publisher', publication.id, 'REVOKED');
  await page.getByRole('button', { name: 'Delete' }).click();
  await page.keyboard.press('Escape');
  assert.equal(await dialog.count(), 0);
  assert.equal((await api('GET', `/medias/${media.id}`, { auth: ada, expect: 200 })).body.status, 'READY');
  await page.getByRole('button', { name: 'Delete' }).click();
  await dialog.getByRole('button', { name: 'Delete' }).click();
  await page.locator('.message-slot .alert.ok').waitFor();
  assert.equal(await page.locator('.facts .badge').first().textContent(), 'DELETED');
  assert.equal((await api('GET', `/medias/${media.id}`, { auth: ada, expect: 200 })).body.status, 'DELETED');
  assert.equal(await page.getByRole('button', { name: 'Delete' }).count(), 0);
  assertClean(page, { allow: [refused(409)] });
  await page.context().close();
});

test('the list: screenshots at both sizes, axe in light and dark, and the keyboard reaches the picker', async () => {
  const page = await open(ada, '/medias');
  await listShown(page);
  await page.waitForFunction(() => [...document.querySelectorAll('.media-list img.thumb')].every((i) => i.complete));
  await page.keyboard.press('Tab');
  let reached = false;
  for (let i = 0; i < 30 && !reached; i += 1) {
    await page.keyboard.press('Tab');
    reached = await page.evaluate(() => document.activeElement?.textContent === 'Choose files…');
  }
  assert.ok(reached, 'Tab reaches "Choose files…"');
  await screenshot(page, 'medias');
  await axeScan(page);
  await page.emulateMedia({ colorScheme: 'dark' });
  await axeScan(page);
  await screenshot(page, 'medias-dark');
  assertClean(page);
  await page.context().close();
});
