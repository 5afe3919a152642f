// Publications: publish a READY media, and every publication, filtered, paged and live
// (rows change in place). REVOKING says the unit is removing the files.

import { api, ApiError } from '../api.js';
import { h, replace, uid } from '../dom.js';
import * as format from '../format.js';
import { busy, button, field, link, messageSlot, pageHeader, showFormError, statusBadge } from '../ui.js';
import { mediaPicker } from './task-new.js';
import { mediaLink, SORTS, taskList, timeColumns, unitColumn } from './tasks.js';

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
        // A 409 (already published, being unpublished) is about the media picked.
        const at = !err.field && err.status === 409 ? new ApiError(err.status, err.code, err.message, 'media_id') : err;
        showFormError(fields, slot, at);
      }
    });
  });
  return h('section', { class: 'card', 'aria-labelledby': id }, h('h2', { id, text: 'Publish a READY media' }), form);
}

export async function render(ctx) {
  const list = taskList(ctx, {
    path: '/publisher/tasks',
    queuesPath: '/publisher/queues',
    noun: 'publication',
    caption: 'Publications',
    sorts: SORTS.filter((o) => o.value !== '-priority'),
    mediaIds: (t) => [t.media_id],
    summary: (page) => `${page.total} publication${page.total === 1 ? '' : 's'}.`,
    columns: (medias) => [
      {
        label: 'Media', key: (t) => format.title(medias.get(t.media_id)),
        node: (t) => [link(`/publications/${t.id}`, format.title(medias.get(t.media_id)) || `Publication ${t.id.slice(0, 8)}`, { class: 'pub-link' }),
          h('span', { class: 'sub' }, mediaLink(t.media_id, medias.get(t.media_id), { filename: true }))],
      },
      {
        label: 'Public URL', class: 'url-col', key: (t) => `${t.status}|${t.publish_uri ?? ''}`,
        node: (t) => (t.publish_uri && t.status === 'SUCCESS' ? publicLink(t.publish_uri) : h('span', { class: 'muted', text: t.publish_uri || '—' })),
      },
      { label: 'Status', live: statusCell },
      { label: 'Queue', text: (t) => t.queue },
      unitColumn,
      ...timeColumns,
    ],
  });
  const listId = uid('pubs');
  replace(ctx.main, pageHeader('Publications'),
    publishForm(ctx, (task) => ctx.navigate(`/publications/${task.id}`)),
    h('section', { 'aria-labelledby': listId }, h('h2', { id: listId, text: 'Publications' }), list.el));
  await list.start();
}
