// One media: the player, its facts and whole probe, the metadata editor (a JSON merge patch),
// lineage, the transform tasks and publications that used it, and its actions (download,
// transform, publish, delete). Task and publication tables stay live while any is running.

import { api, all } from '../api.js';
import { h, replace } from '../dom.js';
import { bytes, dateTime, duration, title } from '../format.js';
import { mediaUrl, player } from '../player.js';
import {
  busy, button, confirmDialog, dataTable, errorBox, facts, field, link, messageSlot, pageHeader,
  skeleton, statusBadge, toast,
} from '../ui.js';

const ACTIVE = ['PENDING', 'STARTED', 'PROGRESS', 'RETRY', 'REVOKING'];
const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi;

const path = (id) => `/medias/${encodeURIComponent(id)}`;
const short = (id) => String(id).slice(0, 8);

function num(value, unit = '') {
  return value === null || value === undefined ? '—' : `${value}${unit}`;
}

function bitRate(bps) {
  if (bps === null || bps === undefined) return '—';
  return bps >= 1e6 ? `${(bps / 1e6).toFixed(2)} Mb/s` : `${Math.round(bps / 1000)} kb/s`;
}

function frameRate(fps) {
  if (fps === null || fps === undefined) return '—';
  return `${Number.isInteger(fps) ? fps : fps.toFixed(3).replace(/0+$/, '')} fps`;
}

/** Only web addresses become links: whatever else a record holds stays text. */
function safeUrl(url) {
  return typeof url === 'string' && /^https?:\/\//i.test(url) ? url : null;
}

/** An API error whose message names tasks by id: each task id becomes a link to its page
 * (`self`, the media's own id, stays text). */
function linkedError(error, heading, self) {
  const text = error?.message || String(error);
  const base = /publisher task/i.test(text) ? '/publications/' : /transform task/i.test(text) ? '/tasks/' : null;
  const parts = [];
  let last = 0;
  for (const m of base ? text.matchAll(UUID) : []) {
    if (m[0] === self) continue;
    parts.push(text.slice(last, m.index), link(`${base}${m[0]}`, m[0]));
    last = m.index + m[0].length;
  }
  parts.push(text.slice(last));
  return h('div', { class: 'alert error', role: 'alert' }, h('strong', { text: `${heading}: ` }), h('span', {}, parts),
    error?.status ? h('span', { class: 'muted', text: ` (${error.status}${error.code ? ` ${error.code}` : ''})` }) : null);
}

/** RFC 7386: the patch that turns `before` into `after` (a removed key is sent as null). */
export function mergePatch(before, after) {
  const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
  const patch = {};
  for (const key of Object.keys(before)) if (!(key in after)) patch[key] = null;
  for (const [key, value] of Object.entries(after)) {
    const old = before[key];
    if (isObject(value) && isObject(old)) {
      const inner = mergePatch(old, value);
      if (Object.keys(inner).length) patch[key] = inner;
    } else if (JSON.stringify(value) !== JSON.stringify(old)) patch[key] = value;
  }
  return patch;
}

function section(id, heading, ...body) {
  return h('section', { class: 'card media-card', 'aria-labelledby': id }, h('h2', { id, text: heading }), body);
}

function probeSection(media) {
  const probe = media.probe;
  if (!probe) {
    return section('probe-title', 'Probe', h('p', { class: 'empty', text: media.status === 'PENDING' ? 'Probed once the task that makes it succeeds.' : 'No probe.' }));
  }
  const f = probe.format || {};
  return section('probe-title', 'Probe',
    facts([
      ['Format', f.long_name ? `${f.name} (${f.long_name})` : f.name],
      ['Duration', f.duration === null || f.duration === undefined ? '—' : `${duration(f.duration)} (${f.duration} s)`],
      ['Bit rate', bitRate(f.bit_rate)],
      ['Size', f.size === null || f.size === undefined ? '—' : `${bytes(f.size)} (${f.size} bytes)`],
    ]),
    h('h3', { class: 'streams-title', text: `Streams (${probe.streams.length})` }),
    h('div', { class: 'streams' }, dataTable([
      { label: 'Index', class: 'num', cell: (s) => String(s.index) },
      { label: 'Type', cell: (s) => s.codec_type },
      { label: 'Codec', cell: (s) => s.codec_name ?? '—' },
      { label: 'Size', class: 'nowrap', cell: (s) => (s.width ? `${s.width}×${s.height}` : '—') },
      { label: 'Frame rate', class: 'num', cell: (s) => frameRate(s.frame_rate) },
      { label: 'Bit rate', class: 'num', cell: (s) => bitRate(s.bit_rate) },
      { label: 'Channels', class: 'num', cell: (s) => num(s.channels) },
      { label: 'Sample rate', class: 'num', cell: (s) => (s.sample_rate ? `${s.sample_rate} Hz` : '—') },
      { label: 'Duration', class: 'num', cell: (s) => (s.duration === null || s.duration === undefined ? '—' : `${s.duration.toFixed(2)} s`) },
    ], probe.streams.map((s) => ({ ...s, id: s.index })), { empty: 'No streams.', caption: 'Streams' })));
}

function metadataSection(ctx, media, onSaved) {
  const slot = messageSlot();
  const editor = field({
    label: 'Metadata (JSON object)', name: 'metadata', type: 'textarea', value: JSON.stringify(media.metadata, null, 2),
    hint: 'Edit the object and save: changed keys are merge-patched, a removed key (or one set to null) is deleted. title is required.',
    attrs: { spellcheck: 'false', rows: 8 },
  });
  let saved = media.metadata;
  const save = button('Save metadata', null, { kind: 'primary', type: 'submit' });
  const reset = button('Revert', () => {
    editor.input.value = JSON.stringify(saved, null, 2);
    editor.setError(null);
    slot.clear();
  });
  const form = h('form', { class: 'form metadata-form', novalidate: true }, editor.el, h('div', { class: 'actions' }, save, reset), slot.el);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    editor.setError(null);
    slot.clear();
    let edited;
    try {
      edited = JSON.parse(editor.input.value);
    } catch (err) {
      editor.setError(`This is not JSON: ${err.message}`);
      editor.input.focus();
      return;
    }
    if (edited === null || typeof edited !== 'object' || Array.isArray(edited)) {
      editor.setError('Metadata is a JSON object: { "title": "…", … }');
      editor.input.focus();
      return;
    }
    const patch = mergePatch(saved, edited);
    if (!Object.keys(patch).length) {
      slot.ok('Nothing changed.');
      return;
    }
    busy(save, async () => {
      try {
        const updated = await api(path(media.id), { method: 'PATCH', json: { metadata: patch }, signal: ctx.signal });
        saved = updated.metadata;
        editor.input.value = JSON.stringify(saved, null, 2);
        slot.ok('Saved.');
        onSaved(updated);
      } catch (err) {
        if (err.name === 'AbortError') return;
        // Every refusal of this form is about the metadata: show it under the field.
        if (err.status === 422) {
          editor.setError(err.message);
          editor.input.focus();
        } else slot.show(err, { title: 'Not saved' });
      }
    });
  });
  if (media.status === 'DELETED') {
    editor.input.readOnly = true;
    save.disabled = true;
  }
  return section('metadata-title', 'Metadata', form);
}

function lineageSection(ctx, media) {
  const parent = h('dd', {}, media.parent_id ? link(path(media.parent_id), media.parent_id) : 'none (uploaded or registered)');
  const children = h('div', {}, skeleton(1));
  if (media.parent_id) {
    api(path(media.parent_id), { signal: ctx.signal })
      .then((p) => replace(parent, link(path(p.id), title(p)), ' ', statusBadge(p.status)))
      .catch((e) => { if (e.name !== 'AbortError') parent.append(h('span', { class: 'muted', text: ` (${e.message})` })); });
  }
  const all3 = 'PENDING,READY,DELETED';
  api('/medias', { signal: ctx.signal, query: { parent_id: media.id, status: all3, limit: 20, sort: '-created_at' } })
    .then((page) => replace(children,
      page.items.length
        ? h('ul', { class: 'plain-list' }, page.items.map((c) => h('li', {}, link(path(c.id), title(c)), ' ', statusBadge(c.status))))
        : h('p', { class: 'muted', text: 'No media was made from this one.' }),
      page.total > page.items.length
        ? h('p', {}, link(`/medias?parent_id=${encodeURIComponent(media.id)}&status=${all3}`, `All ${page.total} medias made from it`))
        : null))
    .catch((e) => { if (e.name !== 'AbortError') replace(children, errorBox(e, { title: 'Children could not be listed' })); });
  return section('lineage-title', 'Lineage',
    h('dl', { class: 'facts' }, h('dt', { text: 'Made from' }), parent),
    h('h3', { class: 'children-title', text: 'Made from it' }), children);
}

function taskTable(media, tasks, profiles) {
  return dataTable([
    { label: 'Task', class: 'mono', cell: (t) => link(`/tasks/${encodeURIComponent(t.id)}`, short(t.id), { title: t.id, 'aria-label': `Transform task ${t.id}` }) },
    { label: 'Role', cell: (t) => (t.media_in_id === media.id ? 'input' : 'output') },
    {
      label: 'Other media',
      cell: (t) => {
        const other = t.media_in_id === media.id ? t.media_out_id : t.media_in_id;
        return link(path(other), short(other), { class: 'mono', title: other, 'aria-label': `Media ${other}` });
      },
    },
    { label: 'Profile', cell: (t) => profiles.get(t.profile_id) || short(t.profile_id) },
    { label: 'Status', cell: (t) => statusBadge(t.status) },
    { label: 'Progress', class: 'num', cell: (t) => (typeof t.progress?.percent === 'number' ? `${Math.round(t.progress.percent)} %` : '—') },
    { label: 'Created', class: 'nowrap', cell: (t) => dateTime(t.created_at) },
  ], tasks, { empty: 'No transform task used this media.', caption: 'Transform tasks' });
}

function publicationTable(tasks) {
  return dataTable([
    { label: 'Publication', class: 'mono', cell: (t) => link(`/publications/${encodeURIComponent(t.id)}`, short(t.id), { title: t.id, 'aria-label': `Publication ${t.id}` }) },
    { label: 'Status', cell: (t) => statusBadge(t.status) },
    {
      label: 'Public URL',
      cell: (t) => {
        const url = safeUrl(t.publish_uri);
        if (url) return h('a', { href: url, text: url, rel: 'noopener noreferrer', target: '_blank', class: 'url' });
        return t.publish_uri ? h('span', { class: 'url', text: t.publish_uri }) : '—';
      },
    },
    { label: 'Created', class: 'nowrap', cell: (t) => dateTime(t.created_at) },
    { label: 'Finished', class: 'nowrap', cell: (t) => dateTime(t.finished_at) },
  ], tasks, { empty: 'Not published.', caption: 'Publications' });
}

export async function render(ctx) {
  const id = ctx.params.id;
  replace(ctx.main, pageHeader('Media'), skeleton(6));
  let media;
  try {
    media = await api(path(id), { signal: ctx.signal });
  } catch (e) {
    if (e.name === 'AbortError') return;
    replace(ctx.main, pageHeader('Media'), errorBox(e, { title: 'This media could not load' }), h('p', {}, link('/medias', 'Back to the medias')));
    return;
  }

  const slot = messageSlot();
  const heading = () => ctx.main.querySelector('h1');
  const profiles = new Map();
  const tasksBody = h('div', {}, skeleton(2));
  const pubsBody = h('div', {}, skeleton(1));
  let fingerprints = { tasks: '', pubs: '' };
  let anyActive = false;

  async function loadTasks() {
    const [tasks, pubs] = await Promise.all([
      api('/transform/tasks', { signal: ctx.signal, query: { media_id: media.id, limit: 50 } }).catch((e) => e),
      api('/publisher/tasks', { signal: ctx.signal, query: { media_id: media.id, limit: 50 } }).catch((e) => e),
    ]);
    for (const r of [tasks, pubs]) if (r?.name === 'AbortError') throw r;
    anyActive = [tasks, pubs].some((r) => !(r instanceof Error) && r.items.some((t) => ACTIVE.includes(t.status)));
    // Redraw a table only when it changed, so a live refresh keeps nodes and focus.
    const tf = tasks instanceof Error ? `e:${tasks.message}` : JSON.stringify(tasks.items.map((t) => [t.id, t.status, t.progress?.percent]));
    if (tf !== fingerprints.tasks) {
      fingerprints.tasks = tf;
      replace(tasksBody, tasks instanceof Error ? errorBox(tasks, { title: 'Tasks could not be listed' }) : [
        taskTable(media, tasks.items, profiles),
        tasks.total > tasks.items.length ? h('p', {}, link(`/tasks?media_id=${encodeURIComponent(media.id)}`, `All ${tasks.total} tasks`)) : null,
      ]);
    }
    const pf = pubs instanceof Error ? `e:${pubs.message}` : JSON.stringify(pubs.items.map((t) => [t.id, t.status, t.publish_uri]));
    if (pf !== fingerprints.pubs) {
      fingerprints.pubs = pf;
      replace(pubsBody, pubs instanceof Error ? errorBox(pubs, { title: 'Publications could not be listed' }) : publicationTable(pubs.items));
    }
  }

  async function publish(btn) {
    slot.clear();
    await busy(btn, async () => {
      try {
        const task = await api('/publisher/tasks', { method: 'POST', json: { media_id: media.id }, signal: ctx.signal });
        replace(slot.el, h('div', { class: 'alert ok', role: 'status' }, 'Publication queued: ',
          link(`/publications/${encodeURIComponent(task.id)}`, 'follow it on its page'), '.'));
        await loadTasks();
      } catch (e) {
        if (e.name !== 'AbortError') slot.show(e, { title: 'Not published' });
      }
    });
  }

  async function remove(btn) {
    slot.clear();
    const yes = await confirmDialog(`Delete "${title(media)}"? Its files are removed; the record stays, DELETED, for lineage.`, { confirm: 'Delete', title: 'Delete this media?' });
    if (!yes) return;
    await busy(btn, async () => {
      try {
        await api(path(media.id), { method: 'DELETE', signal: ctx.signal });
        toast(`Deleted ${title(media)}.`);
        media = await api(path(media.id), { signal: ctx.signal });
        draw();
        slot.ok('Deleted: the files are gone; the record stays for lineage.');
      } catch (e) {
        if (e.name !== 'AbortError') replace(slot.el, linkedError(e, 'Not deleted', media.id));
      }
    });
  }

  let playerControl = null;
  function draw() {
    playerControl?.abort();
    playerControl = new AbortController();
    ctx.signal.addEventListener('abort', () => playerControl.abort(), { once: true });
    const ready = media.status === 'READY';
    const actions = [];
    if (ready) {
      actions.push(h('a', { class: 'btn', href: `/api/v1/medias/${encodeURIComponent(media.id)}/download`, download: media.filename, text: 'Download' }));
      actions.push(h('a', { class: 'btn', href: `#/tasks/new?media=${encodeURIComponent(media.id)}`, text: 'Transform' }));
      actions.push(button('Publish', (e) => publish(e.currentTarget)));
    }
    if (media.status !== 'DELETED') actions.push(button('Delete', (e) => remove(e.currentTarget), { kind: 'danger' }));
    const owner = ctx.isAdmin ? link(`/medias?user_id=${encodeURIComponent(media.user_id)}`, media.user_id, { class: 'mono' }) : h('span', { class: 'mono', text: media.user_id });
    const notice = media.status === 'DELETED'
      ? h('div', { class: 'alert warn', role: 'status', text: 'This media is DELETED: its files are gone; the record stays for lineage.' })
      : media.status === 'PENDING'
        ? h('div', { class: 'alert warn', role: 'status', text: 'This media is PENDING: the transform task that makes it has not succeeded yet.' })
        : null;
    const playerCard = ready
      ? section('player-title', 'Play', player(mediaUrl(media), { filename: media.filename, signal: playerControl.signal }))
      : null;
    // The tab says which media at once (the router would only after the tables load).
    document.title = `${title(media)} · OSCIED`;
    replace(ctx.main,
      pageHeader(title(media), ...actions),
      slot.el,
      notice,
      h('div', { class: ['media-top', playerCard ? 'split' : null] },
        playerCard,
        section('facts-title', 'Details', facts([
          ['Title', title(media)],
          ['File name', h('span', { class: 'mono', text: media.filename })],
          ['Status', statusBadge(media.status)],
          ['Size', media.status === 'PENDING' ? '—' : `${bytes(media.size)} (${media.size} bytes)`],
          ['Duration', duration(media.duration)],
          ['Created', dateTime(media.created_at)],
          ['Updated', dateTime(media.updated_at)],
          ['Owner', owner],
          ['URI', h('span', { class: 'mono', text: media.uri })],
          ['Id', h('span', { class: 'mono', text: media.id })],
        ]))),
      probeSection(media),
      h('div', { class: 'grid media-meta' },
        metadataSection(ctx, media, (updated) => {
          media = updated;
          const h1 = heading();
          if (h1) h1.textContent = title(media);
          document.title = `${title(media)} · OSCIED`;
          const dd = ctx.main.querySelector('.facts dd');
          if (dd) dd.textContent = title(media);
        }),
        lineageSection(ctx, media)),
      section('tasks-title', 'Transform tasks', tasksBody),
      section('pubs-title', 'Publications', pubsBody));
  }

  draw();
  fingerprints = { tasks: '', pubs: '' };
  try {
    for (const p of await all('/transform/profiles', {}, ctx.signal)) profiles.set(p.id, p.title);
  } catch (e) {
    if (e.name === 'AbortError') return;
    // The tables still work, showing profile ids: say why the names are missing.
    tasksBody.before(h('p', { class: 'muted', text: `Profile names could not load: ${e.message}` }));
  }
  try {
    await loadTasks();
  } catch (e) {
    if (e.name === 'AbortError') return;
    throw e;
  }
  // Live while anything runs: tasks, publications, and a PENDING media turning READY.
  ctx.every(3000, async ({ live }) => {
    if (!live && !anyActive && media.status !== 'PENDING') return;
    const fresh = await api(path(media.id), { signal: ctx.signal });
    if (fresh.status !== media.status) {
      media = fresh;
      draw();
      fingerprints = { tasks: '', pubs: '' };
    }
    await loadTasks();
  }, (e) => e.media_id === media.id || e.media_in_id === media.id);
}
