// Publications: publish a READY media, and every publication, filtered, paged and live
// (rows change in place). REVOKING says the unit is removing the files.

import { api } from '../api.js';
import { h, replace, uid } from '../dom.js';
import * as format from '../format.js';
import { busy, button, errorBox, field, link, liveTable, messageSlot, pageHeader, pager, showFormError, skeleton, statusBadge } from '../ui.js';
import { mediaPicker } from './task-new.js';
import { mediaCache, mediaLink, statusOptions } from './tasks.js';

const PAGE = 25;
const REFRESH_MS = 1500;

/** A public URL as a link that leaves the app (it is the publisher's, not ours). */
export function publicLink(uri) {
  return h('a', { href: uri, class: 'public-url', rel: 'noopener noreferrer', target: '_blank', text: uri });
}

function statusCell() {
  const el = h('span', { class: 'pub-status' });
  let last = '';
  return {
    el,
    set(t) {
      if (t.status === last) return;
      last = t.status;
      replace(el, statusBadge(t.status),
        t.status === 'REVOKING' ? h('span', { class: 'sub muted', text: 'the unit is removing the files' }) : null,
        t.status === 'RETRY' ? h('span', { class: 'sub muted', text: `attempt ${t.attempt}` }) : null);
    },
  };
}

function publishForm(ctx, onPublished) {
  const picker = mediaPicker({ signal: ctx.signal, selected: ctx.query.get('media') ?? '', label: 'READY media' });
  picker.select.input.name = 'media_id';
  const queue = field({ label: 'Queue (optional)', name: 'queue', hint: 'Default publisher; a named queue waits for a unit that consumes it.', attrs: { autocomplete: 'off', spellcheck: 'false', maxlength: 64, placeholder: 'publisher' } });
  const slot = messageSlot();
  const submit = button('Publish', null, { kind: 'primary', type: 'submit' });
  const id = uid('publish');
  const form = h('form', { class: 'form publish-form', novalidate: true, 'aria-labelledby': id },
    slot.el, h('div', { class: 'form-row' }, picker.el, queue.el), h('div', { class: 'actions' }, submit));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const fields = { media_id: picker.select, queue };
    for (const f of Object.values(fields)) f.setError(null);
    slot.clear();
    if (!picker.value()) { picker.select.setError('Choose the media to publish.'); picker.select.input.focus(); return; }
    busy(submit, async () => {
      try {
        const task = await api('/publisher/tasks', { method: 'POST', signal: ctx.signal, json: { media_id: picker.value(), queue: queue.input.value.trim() || undefined } });
        onPublished(task, picker.media());
      } catch (err) {
        if (err.name === 'AbortError') return;
        // 409: already published, or not READY: that is about the media picked.
        showFormError(fields, slot, !err.field && err.status === 409 ? Object.assign(err, { field: 'media_id' }) : err);
      }
    });
  });
  return h('section', { class: 'card', 'aria-labelledby': id }, h('h2', { id, text: 'Publish a READY media' }), form);
}

export async function render(ctx) {
  const state = {
    status: ctx.query.get('status') ?? '',
    queue: ctx.query.get('queue') ?? '',
    media_id: ctx.query.get('media_id') ?? '',
    finished_after: ctx.query.get('finished_after') ?? '',
    sort: ctx.query.get('sort') ?? '-created_at',
    skip: Math.max(0, Number.parseInt(ctx.query.get('skip') ?? '0', 10) || 0),
  };
  const medias = mediaCache(ctx.signal);
  const status = field({ label: 'Status', name: 'status', type: 'select', value: state.status, options: statusOptions(state.status) });
  const sort = field({
    label: 'Sort', name: 'sort', type: 'select', value: state.sort,
    options: [{ value: '-created_at', label: 'Newest first' }, { value: 'created_at', label: 'Oldest first' },
      { value: '-finished_at', label: 'Recently finished' }, { value: 'status', label: 'Status' }],
  });
  const chips = h('div', { class: 'filter-chips' });
  const slot = messageSlot();
  const summary = h('p', { class: 'muted', 'aria-live': 'polite' });
  const pagerSlot = h('div');
  const body = h('div', { 'aria-busy': 'true' }, skeleton(4));

  const table = liveTable([
    {
      label: 'Media', key: (t) => format.title(medias.get(t.media_id)),
      node: (t) => [link(`/publications/${t.id}`, format.title(medias.get(t.media_id)) || `Publication ${t.id.slice(0, 8)}`, { class: 'pub-link' }),
        h('span', { class: 'sub' }, mediaLink(t.media_id, medias.get(t.media_id), { filename: true }))],
    },
    { label: 'Public URL', class: 'url-col', key: (t) => `${t.status}|${t.publish_uri ?? ''}`, node: (t) => (t.publish_uri && t.status === 'SUCCESS' ? publicLink(t.publish_uri) : h('span', { class: 'muted', text: t.publish_uri ? t.publish_uri : '—' })) },
    { label: 'Status', live: statusCell },
    { label: 'Queue', text: (t) => t.queue },
    { label: 'Unit', key: (t) => t.unit_id ?? '', node: (t) => (t.unit_id ? link('/units', t.unit_id, { class: 'mono' }) : h('span', { class: 'muted', text: '—' })) },
    { label: 'Created', class: 'nowrap', text: (t) => format.age(t.created_at) },
    { label: 'Finished', class: 'nowrap', text: (t) => (t.finished_at ? format.age(t.finished_at) : '—') },
  ], { empty: 'No publication matches.', caption: 'Publications' });

  const form = publishForm(ctx, (task) => ctx.navigate(`/publications/${task.id}`));
  const listId = uid('pubs');
  replace(ctx.main, pageHeader('Publications'),
    form,
    h('section', { 'aria-labelledby': listId },
      h('h2', { id: listId, text: 'Publications' }),
      h('div', { class: 'toolbar' }, status.el, sort.el), chips, slot.el, summary, body, pagerSlot));

  function drawChips() {
    const items = [];
    if (state.media_id) items.push(chip(['Media: ', mediaLink(state.media_id, medias.get(state.media_id))], 'media_id', 'Clear the media filter'));
    if (state.queue) items.push(chip(`Queue: ${state.queue}`, 'queue', 'Clear the queue filter'));
    if (state.finished_after) items.push(chip(`Finished after ${format.dateTime(state.finished_after)}`, 'finished_after', 'Clear the finish time filter'));
    replace(chips, items);
  }
  function chip(content, key, clearLabel) {
    return h('span', { class: 'chip' }, content,
      button('Clear', () => { state[key] = ''; state.skip = 0; changed(); }, { kind: 'ghost', small: true, label: clearLabel }));
  }

  let seq = 0;
  let shownPager = '';
  async function refresh() {
    const mine = ++seq;
    const page = await api('/publisher/tasks', {
      signal: ctx.signal,
      query: { status: state.status, queue: state.queue, media_id: state.media_id, finished_after: state.finished_after, sort: state.sort, limit: PAGE, skip: state.skip },
    });
    if (mine !== seq) return;
    slot.clear();
    body.removeAttribute('aria-busy');
    if (body.firstChild !== table.el) replace(body, table.el);
    table.update(page.items);
    const said = `${page.total} publication${page.total === 1 ? '' : 's'}.`;
    if (summary.textContent !== said) summary.textContent = said;
    const pagerKey = `${page.total}|${state.skip}`;
    if (pagerKey !== shownPager) {
      shownPager = pagerKey;
      replace(pagerSlot, page.total > PAGE || state.skip > 0 ? pager({ total: page.total, limit: PAGE, skip: state.skip, go: (skip) => { state.skip = skip; changed(); } }) : null);
    }
    const ids = page.items.map((t) => t.media_id);
    if (state.media_id) ids.push(state.media_id);
    if (await medias.load(ids)) {
      if (mine === seq) table.update(page.items);
      drawChips();
    }
  }

  async function changed() {
    ctx.setQuery({ ...state, sort: state.sort === '-created_at' ? '' : state.sort, skip: state.skip || '' });
    body.setAttribute('aria-busy', 'true');
    drawChips();
    try {
      await refresh();
    } catch (e) {
      if (e.name !== 'AbortError') slot.show(e, { title: 'The publications could not load' });
    }
  }
  status.input.addEventListener('change', () => { state.status = status.input.value; state.skip = 0; changed(); });
  sort.input.addEventListener('change', () => { state.sort = sort.input.value; state.skip = 0; changed(); });

  drawChips();
  try {
    await refresh();
  } catch (e) {
    if (e.name === 'AbortError') return;
    replace(body, errorBox(e, { title: 'The publications could not load' }));
  }
  ctx.every(REFRESH_MS, async () => {
    try {
      await refresh();
    } catch (e) {
      if (e.name !== 'AbortError') slot.show(e, { title: 'The publications could not refresh' });
    }
  });
}
