// In-page playback: MP4/WebM/MKV/MOV through the video element, HLS through hls.js (or the
// browser's own HLS where there is no Media Source Extensions), DASH through dash.js. The
// vendored players are loaded only when a package is played, once per page.

import { h } from './dom.js';

/** Where the vendored players live (served by the orchestra beside the UI). */
export const VENDOR = {
  hls: '/vendor/hls.js/hls.min.js',
  dash: '/vendor/dashjs/dash.all.min.js',
};

const scripts = new Map();

/** Add `<script src>` once; resolves when it has run (a second caller shares the wait). */
export function loadScript(src) {
  if (!scripts.has(src)) {
    scripts.set(src, new Promise((resolve, reject) => {
      const script = h('script', { src, async: true });
      script.addEventListener('load', () => resolve(), { once: true });
      script.addEventListener('error', () => {
        scripts.delete(src);
        script.remove();
        reject(new Error(`the player library ${src} could not be loaded`));
      }, { once: true });
      document.head.append(script);
    }));
  }
  return scripts.get(src);
}

/** Where the page plays a READY media of the orchestra: a package by its playlist among its
 * files (so the segments resolve beside it), a single file by its download route. */
export function mediaUrl(media) {
  const id = encodeURIComponent(media.id);
  return kindOf(media.filename) === 'file'
    ? `/api/v1/medias/${id}/download`
    : `/api/v1/medias/${id}/files/${encodeURIComponent(media.filename)}`;
}

/** `hls`, `dash` or `file`, from the name's extension. */
export function kindOf(filename) {
  const ext = String(filename).split(/[?#]/)[0].split('.').pop().toLowerCase();
  if (ext === 'm3u8') return 'hls';
  if (ext === 'mpd') return 'dash';
  return 'file';
}

const MEDIA_ERRORS = {
  1: 'playback was aborted',
  2: 'a network error stopped the download',
  3: 'the file could not be decoded',
  4: 'this browser cannot play this format, or the file could not be fetched',
};

function hasMediaSource() {
  return Boolean(window.MediaSource || window.ManagedMediaSource);
}

/**
 * A player for `url` (the orchestra's `/api/v1/medias/{id}/files/<filename>`, its download
 * route, or a public publication URL); `filename` decides the kind. Torn down when `signal`
 * aborts. The element carries `data-kind` and, once chosen, `data-engine` (native, hls.js,
 * dash.js); errors show under the video as text.
 */
export function player(url, { filename = url, signal } = {}) {
  const kind = kindOf(filename);
  const video = h('video', { controls: true, preload: 'metadata', playsInline: true });
  const error = h('p', { class: 'player-error', role: 'alert', hidden: true });
  const el = h('div', { class: 'player', dataset: { kind } }, h('div', { class: 'player-screen' }, video), error);
  let teardown = () => {};
  let stopped = false;

  function fail(text) {
    if (stopped) return;
    error.textContent = `Cannot play: ${text}`;
    error.hidden = false;
  }

  video.addEventListener('error', () => {
    const e = video.error;
    if (!e) return;
    fail(`${MEDIA_ERRORS[e.code] || `media error ${e.code}`}${e.message ? ` (${e.message})` : ''}.`);
  });

  function native() {
    el.dataset.engine = 'native';
    video.src = url;
  }

  async function withHls() {
    // hls.js wherever Media Source Extensions exist, so every browser plays through the same
    // code (and its errors); the browser's own HLS only where MSE is missing (older iOS).
    if (!hasMediaSource()) {
      if (video.canPlayType('application/vnd.apple.mpegurl')) native();
      else fail('this browser has neither Media Source Extensions nor native HLS.');
      return;
    }
    await loadScript(VENDOR.hls);
    if (stopped) return;
    const Hls = window.Hls;
    if (!Hls?.isSupported()) {
      if (video.canPlayType('application/vnd.apple.mpegurl')) native();
      else fail('hls.js is not supported in this browser.');
      return;
    }
    el.dataset.engine = 'hls.js';
    // The default config: its transmuxer runs in a blob: worker, which the CSP allows
    // (worker-src 'self' blob:, orchestra/ui/vendor/VERSIONS.md).
    const hls = new Hls();
    let destroyed = false;
    const destroy = () => {
      if (!destroyed) hls.destroy();
      destroyed = true;
    };
    hls.on(Hls.Events.ERROR, (_event, data) => {
      if (!data.fatal) return;
      const status = data.response?.code ? ` (HTTP ${data.response.code})` : '';
      fail(`HLS ${data.type}: ${data.details}${status}${data.error?.message ? `: ${data.error.message}` : ''}.`);
      destroy();
    });
    hls.loadSource(url);
    hls.attachMedia(video);
    teardown = destroy;
  }

  async function withDash() {
    if (!hasMediaSource()) {
      fail('this browser has no Media Source Extensions, which DASH needs.');
      return;
    }
    await loadScript(VENDOR.dash);
    if (stopped) return;
    const { dashjs } = window;
    el.dataset.engine = 'dash.js';
    const dash = dashjs.MediaPlayer().create();
    // Its own log stays at errors (which also reach the page below the video).
    dash.updateSettings({ debug: { logLevel: dashjs.Debug.LOG_LEVEL_ERROR } });
    dash.on(dashjs.MediaPlayer.events.ERROR, (e) => {
      const detail = e?.error?.message || e?.error?.code || e?.error || 'unknown error';
      fail(`DASH: ${detail}.`);
    });
    dash.initialize(video, url, false);
    teardown = () => dash.reset();
  }

  const start = kind === 'hls' ? withHls : kind === 'dash' ? withDash : async () => native();
  start().catch((e) => fail(e.message));

  signal?.addEventListener('abort', () => {
    stopped = true;
    try {
      teardown();
    } finally {
      video.removeAttribute('src');
      video.load();
    }
  }, { once: true });
  return el;
}
