// Overview: what the farm holds and does now. Every number links to the list it counts.

import { api } from '../api.js';
import { h, replace } from '../dom.js';
import { dataTable, errorBox, pageHeader, skeleton } from '../ui.js';

const TASK_STATUSES = ['PENDING', 'STARTED', 'PROGRESS', 'RETRY', 'REVOKING', 'SUCCESS', 'FAILURE', 'REVOKED'];
const RUNNING = ['STARTED', 'PROGRESS', 'REVOKING'];
const QUEUED = ['PENDING', 'RETRY'];

function stat(value, label, href, kind) {
  return h('a', { class: ['stat', kind], href: `#${href}` },
    h('span', { class: 'value', text: value ?? 0 }), h('span', { class: 'label', text: label }));
}

function sum(counts, statuses) {
  return statuses.reduce((total, s) => total + (counts?.[s] ?? 0), 0);
}

function taskCard(title, base, counts) {
  const since = new Date(Date.now() - 24 * 3600 * 1000).toISOString();
  const by = counts?.by_status ?? {};
  return h('section', { class: 'card', 'aria-labelledby': `${base.slice(1)}-title` },
    h('h2', { id: `${base.slice(1)}-title`, text: title }),
    h('div', { class: 'stats' },
      stat(sum(by, QUEUED), 'queued', `${base}?status=${QUEUED.join(',')}`),
      stat(sum(by, RUNNING), 'running', `${base}?status=${RUNNING.join(',')}`, 'run'),
      stat(counts?.failed_last_24h ?? 0, 'failed in 24 h', `${base}?status=FAILURE&finished_after=${encodeURIComponent(since)}`, 'bad'),
      stat(by.SUCCESS ?? 0, 'succeeded', `${base}?status=SUCCESS`, 'ok')),
    h('details', { class: 'by-status' }, h('summary', { text: 'Every status' }),
      h('div', { class: 'stats' }, TASK_STATUSES.map((s) => stat(by[s] ?? 0, s, `${base}?status=${s}`)))));
}

function queueTable(kind, queues, base) {
  return dataTable([
    { label: 'Queue', cell: (q) => q.name },
    { label: 'Waiting', class: 'num', cell: (q) => h('a', { href: `#${base}?queue=${encodeURIComponent(q.name)}&status=${QUEUED.join(',')}`, text: q.pending }) },
    { label: 'Running', class: 'num', cell: (q) => h('a', { href: `#${base}?queue=${encodeURIComponent(q.name)}&status=${RUNNING.join(',')}`, text: q.running }) },
    { label: 'On broker', class: 'num', cell: (q) => (q.messages === null || q.messages === undefined ? '—' : String(q.messages)) },
    { label: 'Units', class: 'num', cell: (q) => String(q.units?.length ?? 0) },
    { label: 'Slots', class: 'num', cell: (q) => String(q.concurrency ?? 0) },
  ], queues.map((q) => ({ ...q, id: q.name })), { empty: `No ${kind} queue yet.`, caption: `${kind} queues` });
}

export async function render(ctx) {
  const body = h('div', {}, skeleton(4));
  replace(ctx.main, pageHeader('Overview'), body);

  async function load() {
    const [overview, transformQueues, publisherQueues] = await Promise.all([
      api('/overview', { signal: ctx.signal }),
      api('/transform/queues', { signal: ctx.signal }).catch((e) => e),
      api('/publisher/queues', { signal: ctx.signal }).catch((e) => e),
    ]);
    const m = overview.medias ?? {};
    const u = overview.units ?? {};
    replace(body,
      h('div', { class: 'grid' },
        h('section', { class: 'card', 'aria-labelledby': 'medias-title' },
          h('h2', { id: 'medias-title', text: 'Medias' }),
          h('div', { class: 'stats' },
            stat(m.READY, 'ready', '/medias?status=READY', 'ok'),
            stat(m.PENDING, 'pending', '/medias?status=PENDING'),
            stat(m.DELETED, 'deleted', '/medias?status=DELETED'))),
        h('section', { class: 'card', 'aria-labelledby': 'units-title' },
          h('h2', { id: 'units-title', text: 'Units' }),
          h('div', { class: 'stats' },
            stat(u.online, 'online', '/units?online=true', 'ok'),
            stat(u.offline, 'offline', '/units?online=false', u.offline ? 'bad' : undefined)))),
      h('div', { class: 'grid' },
        taskCard('Transform tasks', '/tasks', overview.transform_tasks),
        taskCard('Publications', '/publications', overview.publisher_tasks)),
      h('div', { class: 'grid' },
        h('section', { class: 'card', 'aria-labelledby': 'tq-title' }, h('h2', { id: 'tq-title', text: 'Transform queues' }),
          transformQueues instanceof Error ? errorBox(transformQueues) : queueTable('transform', transformQueues.items, '/tasks')),
        h('section', { class: 'card', 'aria-labelledby': 'pq-title' }, h('h2', { id: 'pq-title', text: 'Publisher queues' }),
          publisherQueues instanceof Error ? errorBox(publisherQueues) : queueTable('publisher', publisherQueues.items, '/publications'))));
  }

  try {
    await load();
  } catch (e) {
    if (e.name === 'AbortError') return;
    replace(body, errorBox(e, { title: 'The overview could not load' }));
  }
  // Numbers stay live without a reload; a failed refresh keeps the last numbers shown.
  ctx.every(5000, load);
}
