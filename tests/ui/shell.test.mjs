// The UI's shell as the browser gets it: the security headers, the vendored players loading
// and playing H.264/AAC under the strict CSP, and axe on whatever `/` renders.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { promisify } from 'node:util';

import {
  CSP, ORCHESTRA, assertClean, axeScan, clip, newPage, screenshot,
} from './lib/harness.mjs';

const HLS = '/vendor/hls.js/hls.min.js';
const DASH = '/vendor/dashjs/dash.all.min.js';
const H264_AAC = 'video/mp4; codecs="avc1.42E01E,mp4a.40.2"';

test('the page and its files carry the CSP, nosniff and the other headers', async () => {
  for (const [path, type] of [
    ['/', 'text/html; charset=utf-8'],
    ['/js/app.js', 'text/javascript; charset=utf-8'],
    [HLS, 'text/javascript; charset=utf-8'],
    [DASH, 'text/javascript; charset=utf-8'],
  ]) {
    const response = await fetch(`${ORCHESTRA}${path}`);
    assert.equal(response.status, 200, path);
    assert.equal(response.headers.get('content-type'), type, path);
    assert.equal(response.headers.get('content-security-policy'), CSP, path);
    assert.equal(response.headers.get('x-content-type-options'), 'nosniff', path);
    assert.equal(response.headers.get('referrer-policy'), 'no-referrer', path);
    assert.equal(response.headers.get('x-frame-options'), 'DENY', path);
    await response.arrayBuffer();
  }
});

test('the harness catches a CSP violation, a blocked eval and a dialog', async () => {
  const page = await newPage();
  // A same-origin script (so the CSP lets it run) that tries what the CSP forbids. Code
  // evaluated over CDP is exempt from the CSP, so the attempts must come from a page script.
  await page.route(`${ORCHESTRA}/__probe.js`, (route) => route.fulfill({
    contentType: 'text/javascript',
    body: `
      setTimeout(() => {
        const inline = document.createElement('script');
        inline.textContent = 'window.inlineRan = true';
        document.head.append(inline);
        try { window.evalResult = eval('1 + 1'); } catch (error) { window.evalResult = error.name; }
        alert('hello');
      }, 0);`,
  }));
  await page.goto(`${ORCHESTRA}/`);
  await page.addScriptTag({ url: '/__probe.js' });
  await page.waitForFunction(() => window.evalResult !== undefined);
  await page.waitForTimeout(300);
  assert.equal(await page.evaluate(() => window.evalResult), 'EvalError', 'the CSP blocks eval');
  assert.equal(await page.evaluate(() => window.inlineRan), undefined, 'the CSP blocks inline script');
  assert.throws(() => assertClean(page), (error) => {
    assert.match(error.message, /CSP violation: script-src-elem blocked inline/);
    assert.match(error.message, /CSP violation: script-src blocked eval/);
    assert.match(error.message, /dialog alert: hello/);
    return true;
  });
  await page.context().close();
});

test('hls.js and dash.js load under the CSP; chromium takes H.264/AAC', async () => {
  const page = await newPage();
  await page.goto(`${ORCHESTRA}/`);
  await page.addScriptTag({ url: HLS });
  await page.addScriptTag({ url: DASH });
  const found = await page.evaluate((type) => ({
    hls: typeof window.Hls === 'function' && window.Hls.isSupported(),
    hlsVersion: window.Hls?.version,
    dash: typeof window.dashjs?.MediaPlayer === 'function',
    dashVersion: window.dashjs?.Version,
    mse: MediaSource.isTypeSupported(type),
    video: document.createElement('video').canPlayType(type),
  }), H264_AAC);
  assert.equal(found.hls, true, `Hls.isSupported(): ${JSON.stringify(found)}`);
  assert.equal(found.dash, true, `dashjs.MediaPlayer: ${JSON.stringify(found)}`);
  assert.equal(found.mse, true, `MediaSource.isTypeSupported(${H264_AAC})`);
  assert.equal(found.video, 'probably', `canPlayType(${H264_AAC})`);
  console.log(`hls.js ${found.hlsVersion}, dash.js ${found.dashVersion}`);
  assertClean(page);
  await page.context().close();
});

const run = promisify(execFile);

/** An HLS (MPEG-TS segments) and a DASH package of one clip, made by ffmpeg. */
async function packages() {
  const source = await clip('players', 4, 320, 240);
  const dir = mkdtempSync(join(tmpdir(), 'oscied-ui-packages-'));
  mkdirSync(join(dir, 'hls'));
  mkdirSync(join(dir, 'dash'));
  const ffmpeg = (args) => run('ffmpeg', ['-nostdin', '-hide_banner', '-loglevel', 'error', '-y', '-i', source, '-c', 'copy', ...args]);
  await ffmpeg(['-f', 'hls', '-hls_time', '1', '-hls_playlist_type', 'vod',
    '-hls_segment_filename', join(dir, 'hls', 'segment%03d.ts'), join(dir, 'hls', 'index.m3u8')]);
  await ffmpeg(['-f', 'dash', '-seg_duration', '1', join(dir, 'dash', 'manifest.mpd')]);
  return dir;
}

const TYPES = {
  m3u8: 'application/vnd.apple.mpegurl',
  ts: 'video/mp2t',
  mpd: 'application/dash+xml',
  m4s: 'video/iso.segment',
};

/**
 * A page on the orchestra's origin where `/__packages/...` answers files of `dir`: the
 * request leaves the page as a same-origin one and the CSP applies as served; Playwright
 * answers it from disk.
 */
async function playerPage(dir) {
  const page = await newPage();
  const workers = [];
  page.on('worker', (worker) => workers.push(worker.url()));
  await page.route(`${ORCHESTRA}/__packages/**`, (route) => {
    const path = new URL(route.request().url()).pathname.replace('/__packages/', '');
    assert.match(path, /^(hls|dash)\/[A-Za-z0-9._-]+$/);
    return route.fulfill({ path: join(dir, path), contentType: TYPES[path.split('.').pop()] ?? 'application/octet-stream' });
  });
  await page.goto(`${ORCHESTRA}/`);
  await page.evaluate(() => {
    const video = document.createElement('video');
    video.id = 'player-under-test';
    video.muted = true;
    document.body.append(video);
  });
  return { page, workers };
}

/** Wait until the test video has played past `seconds`; answers its size. */
async function playedPast(page, seconds) {
  await page.waitForFunction((s) => document.getElementById('player-under-test').currentTime > s, seconds, { timeout: 30_000 });
  return page.evaluate(() => {
    const video = document.getElementById('player-under-test');
    return { width: video.videoWidth, height: video.videoHeight, error: video.error?.message };
  });
}

let made;
after(() => made && rmSync(made, { recursive: true, force: true }));

test('hls.js plays H.264/AAC under the CSP, transmuxing in a blob: worker', async () => {
  made ??= await packages();
  const { page, workers } = await playerPage(made);
  await page.addScriptTag({ url: HLS });
  await page.evaluate(() => {
    const video = document.getElementById('player-under-test');
    // The default (enableWorker: true): worker-src blob: lets it start its transmuxer.
    const hls = new window.Hls({ enableWorker: true });
    hls.on(window.Hls.Events.ERROR, (_event, data) => {
      if (data.fatal) console.error(`hls.js fatal error: ${data.details}`);
    });
    hls.on(window.Hls.Events.MANIFEST_PARSED, () => video.play());
    hls.loadSource('/__packages/hls/index.m3u8');
    hls.attachMedia(video);
  });
  const size = await playedPast(page, 1);
  assert.deepEqual(size, { width: 320, height: 240, error: undefined });
  assert.ok(workers.some((url) => url.startsWith('blob:')), `a blob: worker ran: ${JSON.stringify(workers)}`);
  assertClean(page);
  await page.context().close();
});

test('dash.js plays H.264/AAC under the CSP', async () => {
  made ??= await packages();
  const { page } = await playerPage(made);
  await page.addScriptTag({ url: DASH });
  await page.evaluate(() => {
    const video = document.getElementById('player-under-test');
    const player = window.dashjs.MediaPlayer().create();
    player.updateSettings({ debug: { logLevel: window.dashjs.Debug.LOG_LEVEL_NONE } });
    player.on(window.dashjs.MediaPlayer.events.ERROR, (e) => console.error(`dash.js error: ${JSON.stringify(e.error)}`));
    player.initialize(video, '/__packages/dash/manifest.mpd', true);
  });
  const size = await playedPast(page, 1);
  assert.deepEqual(size, { width: 320, height: 240, error: undefined });
  assertClean(page);
  await page.context().close();
});

test('axeScan fails on a serious violation, naming the rule and the element', async () => {
  const page = await newPage();
  await page.goto(`${ORCHESTRA}/`);
  await page.evaluate(() => {
    const button = document.createElement('button');
    button.id = 'nameless';
    document.body.append(button);
  });
  await assert.rejects(axeScan(page), /\[critical\] button-name: .*\n.*#nameless/);
  await page.context().close();
});

test('axe finds nothing serious or critical on /', async () => {
  const page = await newPage();
  await page.goto(`${ORCHESTRA}/`);
  await page.waitForLoadState('networkidle');
  await axeScan(page);
  await screenshot(page, 'shell');
  assertClean(page);
  await page.context().close();
});
