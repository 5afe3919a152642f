// In-page playback: MP4/WebM/MKV through the video element, HLS through hls.js (or the
// browser's own HLS), DASH through dash.js. Players are loaded only when needed.
// (Being completed by the medias page work.)

import { h } from './dom.js';

/**
 * A player for `url` (the orchestra's `/api/v1/medias/{id}/files/<filename>` or a public
 * publication URL); `filename` decides the kind. Torn down when `signal` aborts.
 */
export function player(url, { filename = url, signal } = {}) {
  const video = h('video', { controls: true, preload: 'metadata', playsInline: true, src: url });
  signal?.addEventListener('abort', () => { video.removeAttribute('src'); video.load(); }, { once: true });
  return h('div', { class: 'player', dataset: { kind: filename.split('.').pop() } }, video);
}
