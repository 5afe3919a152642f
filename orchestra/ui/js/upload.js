// Uploading files to `POST /medias`: a drop zone with a file picker, and one row per file with
// its title, a byte progress bar, Cancel, and the API's answer (the media, or why it was
// refused). Uploads live in this module, not in the page, so they keep going (and keep their
// rows) when the operator looks at another page and comes back.

import { upload } from './api.js';
import { h, replace, uid } from './dom.js';
import { button, progressBar, statusBadge } from './ui.js';
import { bytes } from './format.js';

/** At most this many files are sent at once; the others wait their turn. */
const PARALLEL = 3;

/** Every upload of this tab: {id, file, title, state, loaded, total, error, media, controller}. */
const jobs = [];
const watchers = new Set();

function changed(job) {
  for (const watch of watchers) watch(job);
}

function pump() {
  const running = jobs.filter((j) => j.state === 'sending' || j.state === 'probing').length;
  for (const job of jobs.filter((j) => j.state === 'waiting').slice(0, Math.max(0, PARALLEL - running))) send(job);
}

async function send(job) {
  job.state = 'sending';
  changed(job);
  const form = new FormData();
  form.append('title', job.title);
  form.append('file', job.file, job.file.name);
  try {
    job.media = await upload('/medias', form, {
      signal: job.controller.signal,
      onProgress(loaded, total) {
        job.loaded = loaded;
        job.total = total;
        // Every byte is sent: the orchestra now probes the file before it answers.
        if (loaded >= total) job.state = 'probing';
        changed(job);
      },
    });
    job.loaded = job.total;
    job.state = 'done';
  } catch (e) {
    if (e.name === 'AbortError') job.state = 'cancelled';
    else {
      job.state = 'failed';
      job.error = e;
    }
  }
  changed(job);
  pump();
}

/** Queue files for upload; each is titled with its file name. */
export function enqueue(files) {
  for (const file of files) {
    jobs.push({ id: uid('upload'), file, title: file.name, state: 'waiting', loaded: 0, total: file.size, error: null, media: null, controller: new AbortController() });
    changed(jobs[jobs.length - 1]);
  }
  pump();
}

function cancel(job) {
  if (job.state === 'waiting') {
    job.state = 'cancelled';
    changed(job);
  }
  job.controller.abort();
}

function active() {
  return jobs.some((j) => ['waiting', 'sending', 'probing'].includes(j.state));
}

// Closing the tab would drop the uploads in flight: ask first.
window.addEventListener('beforeunload', (e) => {
  if (active()) e.preventDefault();
});

function stateText(job) {
  switch (job.state) {
    case 'waiting': return 'Waiting';
    case 'sending': return `Uploading ${bytes(job.loaded)} of ${bytes(job.total)}`;
    case 'probing': return 'Sent; the orchestra is probing it…';
    case 'done': return 'Uploaded';
    case 'cancelled': return 'Cancelled';
    default: return 'Refused';
  }
}

/** One file's row; `update()` changes it in place as the upload moves on. */
function uploadRow(job) {
  const bar = progressBar(`Upload of ${job.file.name}`);
  const name = h('span', { class: 'upload-name', text: job.title });
  const size = h('span', { class: 'muted', text: bytes(job.file.size) });
  const state = h('span', { class: 'upload-state' });
  const result = h('div', { class: 'upload-result', 'aria-live': 'polite' });
  const cancelButton = button('Cancel', () => cancel(job), { kind: 'ghost', label: `Cancel the upload of ${job.file.name}`, attrs: { 'data-action': 'cancel' } });
  cancelButton.classList.add('btn-small');
  const el = h('li', { class: 'upload', dataset: { upload: job.id, state: job.state } },
    h('div', { class: 'upload-head' }, name, size, state, cancelButton), bar.el, result);
  let shown = null;
  function update() {
    el.dataset.state = job.state;
    state.textContent = stateText(job);
    const percent = job.total ? (100 * job.loaded) / job.total : 0;
    if (job.state === 'done') bar.set(100);
    else if (job.state === 'failed' || job.state === 'cancelled') bar.set(percent, job.state === 'cancelled' ? 'cancelled' : undefined);
    else bar.set(percent);
    cancelButton.hidden = !['waiting', 'sending', 'probing'].includes(job.state);
    if (shown === job.state) return;
    shown = job.state;
    if (job.state === 'done') {
      replace(result, statusBadge(job.media.status), ' ',
        h('a', { href: `#/medias/${encodeURIComponent(job.media.id)}`, text: job.media.metadata?.title || job.media.filename }));
    } else if (job.state === 'failed') {
      const e = job.error;
      replace(result, h('p', { class: 'field-error', role: 'alert' },
        h('span', { text: e.message }), e.status ? h('span', { class: 'muted', text: ` (${e.status}${e.code ? ` ${e.code}` : ''})` }) : null));
    } else result.replaceChildren();
  }
  update();
  return { el, update };
}

/**
 * The upload panel: a drop zone with a "Choose files" button, and the rows. `onUploaded(media)`
 * runs when a file becomes a media (the list refreshes); `signal` detaches the panel.
 */
export function uploadPanel({ onUploaded, signal }) {
  const inputId = uid('files');
  // The button is what the keyboard reaches; the input stays hidden (and labelled for tools).
  const input = h('input', { type: 'file', id: inputId, name: 'files', multiple: true, hidden: true, 'aria-label': 'Media files to upload' });
  const choose = button('Choose files…', () => input.click(), { kind: 'primary' });
  const list = h('ul', { class: 'uploads', 'aria-label': 'Uploads' });
  const clear = button('Clear finished', () => {
    for (let i = jobs.length - 1; i >= 0; i -= 1) if (['done', 'failed', 'cancelled'].includes(jobs[i].state)) jobs.splice(i, 1);
    draw();
  }, { kind: 'ghost' });
  clear.classList.add('btn-small');
  const zone = h('div', { class: 'dropzone', dataset: { dropzone: '' } },
    h('p', { class: 'dropzone-text' }, h('strong', { text: 'Drop media files here' }), h('span', { class: 'muted', text: ' or ' }), choose),
    h('p', { class: 'hint', text: 'Several files at once; each becomes a media titled with its file name (change the title on its page).' }),
    input);
  const el = h('div', { class: 'upload-panel' }, zone, h('div', { class: 'uploads-wrap' }, list, h('div', { class: 'uploads-actions' }, clear)));
  const rows = new Map();

  function draw() {
    rows.clear();
    replace(list, jobs.map((job) => {
      const row = uploadRow(job);
      rows.set(job.id, row);
      return row.el;
    }));
    const any = jobs.length > 0;
    list.hidden = !any;
    clear.hidden = !jobs.some((j) => ['done', 'failed', 'cancelled'].includes(j.state));
  }

  const watch = (job) => {
    if (!rows.has(job.id)) draw();
    else rows.get(job.id).update();
    clear.hidden = !jobs.some((j) => ['done', 'failed', 'cancelled'].includes(j.state));
    if (job.state === 'done' && !job.reported) {
      job.reported = true;
      onUploaded?.(job.media);
    }
  };
  watchers.add(watch);
  signal?.addEventListener('abort', () => watchers.delete(watch), { once: true });

  input.addEventListener('change', () => {
    enqueue([...input.files]);
    input.value = '';
  });

  // Dropping a file anywhere else on the page would make the browser open it and leave the
  // UI: the page takes every drop while it is shown.
  let depth = 0;
  const over = (e) => {
    if (![...(e.dataTransfer?.types || [])].includes('Files')) return;
    e.preventDefault();
    e.dataTransfer.dropEffect = 'copy';
  };
  const drop = (e) => {
    if (![...(e.dataTransfer?.types || [])].includes('Files')) return;
    e.preventDefault();
    depth = 0;
    zone.classList.remove('is-over');
    if (e.dataTransfer.files.length) enqueue([...e.dataTransfer.files]);
  };
  zone.addEventListener('dragenter', (e) => {
    if (![...(e.dataTransfer?.types || [])].includes('Files')) return;
    depth += 1;
    zone.classList.add('is-over');
  });
  zone.addEventListener('dragleave', () => {
    depth = Math.max(0, depth - 1);
    if (depth === 0) zone.classList.remove('is-over');
  });
  window.addEventListener('dragover', over);
  window.addEventListener('drop', drop);
  signal?.addEventListener('abort', () => {
    window.removeEventListener('dragover', over);
    window.removeEventListener('drop', drop);
  }, { once: true });

  draw();
  return el;
}
