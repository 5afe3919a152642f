// Transform tasks: the list, filtered and paged through the API, live. Each refresh updates
// the rows in place (liveTable), so progress bars move without flicker and focus stays.
// Also the pieces the task detail shares: the progress widget and the media lookup.

import { all, api } from '../api.js';
import { h, replace } from '../dom.js';
import * as format from '../format.js';
import { button, errorBox, field, link, liveTable, messageSlot, pageHeader, pager, progressBar, skeleton, statusBadge } from '../ui.js';

export const FINAL = ['SUCCESS', 'FAILURE', 'REVOKED'];
const RUNNING = ['STARTED', 'PROGRESS', 'REVOKING'];
const STATUSES = ['PENDING', 'STARTED', 'PROGRESS', 'RETRY', 'REVOKING', 'SUCCESS', 'FAILURE', 'REVOKED'];
const PAGE = 25;
const REFRESH_MS = 1500;

/** The orders of task lists (publisher tasks have no priority). */
export const SORTS = [
  { value: '-created_at', label: 'Newest first' },
  { value: 'created_at', label: 'Oldest first' },
  { value: '-started_at', label: 'Recently started' },
  { value: '-finished_at', label: 'Recently finished' },
  { value: '-priority', label: 'Highest priority' },
  { value: 'status', label: 'Status' },
];

export const STATUS_OPTIONS = [
  { value: '', label: 'All statuses' },
  { value: 'PENDING,RETRY', label: 'Queued (PENDING, RETRY)' },
  { value: RUNNING.join(','), label: 'Running (STARTED, PROGRESS, REVOKING)' },
  { value: FINAL.join(','), label: 'Finished (SUCCESS, FAILURE, REVOKED)' },
  ...STATUSES.map((s) => ({ value: s, label: s })),
];

/** The status options, with the hash's own comma list added when it is none of them. */
export function statusOptions(current) {
  if (!current || STATUS_OPTIONS.some((o) => o.value === current)) return STATUS_OPTIONS;
  return [...STATUS_OPTIONS, { value: current, label: current.split(',').join(', ') }];
}

/**
 * Medias looked up once per page: `get(id)` answers the cached media (null while loading or
 * when it cannot be read), `load(ids)` fetches the missing ones and resolves when they are in.
 */
export function mediaCache(signal) {
  const cache = new Map();
  const fetchOne = (id) => {
    const p = api(`/medias/${id}`, { signal })
      .then((m) => { cache.set(id, m); })
      .catch((e) => {
        if (e.name === 'AbortError') throw e;
        // A media one may not read keeps its id, with the reason as a tooltip.
        cache.set(id, { id, unreadable: e.message });
      });
    if (!cache.has(id)) cache.set(id, p);
    return p;
  };
  return {
    get(id) {
      const v = cache.get(id);
      return v && !(v instanceof Promise) ? v : null;
    },
    async load(ids) {
      const wanted = [...new Set(ids)].filter((id) => id && !cache.has(id));
      await Promise.all(wanted.map(fetchOne));
      return wanted.length > 0;
    },
    /** Fetch one again (its status changed). */
    reload: fetchOne,
  };
}

/** A media as a link: its title, or its short id until it is known. */
export function mediaLink(id, media, { filename = false } = {}) {
  if (!id) return '—';
  const text = media && !media.unreadable ? (filename ? media.filename : format.title(media)) : `${id.slice(0, 8)}…`;
  return link(`/medias/${id}`, text, media?.unreadable ? { title: media.unreadable } : {});
}

function num(value, digits = 0) {
  return value === null || value === undefined ? null : Number(value).toFixed(digits);
}

/** "25 fps · 1.92× · ETA 0:12" from a progress report (what is known of it). */
export function progressLine(progress) {
  if (!progress) return '';
  const parts = [];
  if (progress.fps !== null && progress.fps !== undefined) parts.push(`${num(progress.fps)} fps`);
  if (progress.speed !== null && progress.speed !== undefined) parts.push(`${num(progress.speed, 2)}×`);
  if (progress.eta !== null && progress.eta !== undefined) parts.push(`ETA ${format.eta(progress.eta)}`);
  return parts.join(' · ');
}

/** The percent a task's bar shows: its report while running, 100 once done. */
export function percentOf(task) {
  if (task.status === 'SUCCESS') return 100;
  return task.progress ? task.progress.percent : null;
}

/** The list's progress cell: a bar with its percent and a line of fps, speed and ETA. */
function progressCell() {
  const bar = progressBar('Progress');
  const line = h('span', { class: 'progress-line muted' });
  const note = h('span', { class: 'muted' });
  const el = h('div', { class: 'task-progress' }, bar.el, line, note);
  return {
    el,
    set(task) {
      const running = RUNNING.includes(task.status) || task.status === 'SUCCESS';
      bar.el.hidden = !running;
      line.hidden = !running || task.status === 'SUCCESS';
      bar.el.querySelector('progress').setAttribute('aria-label', `Progress of ${task.id.slice(0, 8)}`);
      if (running) bar.set(percentOf(task));
      const text = running ? progressLine(task.progress) : '';
      if (line.textContent !== text) line.textContent = text;
      let said = '';
      if (task.status === 'PENDING') said = 'queued';
      else if (task.status === 'RETRY') said = `queued again (attempt ${task.attempt})`;
      else if (!running && task.progress) said = `stopped at ${Math.round(task.progress.percent)} %`;
      if (note.textContent !== said) note.textContent = said;
    },
  };
}

/** The unit and time columns both task lists show. */
export const unitColumn = { label: 'Unit', key: (t) => t.unit_id ?? '', node: (t) => (t.unit_id ? link('/units', t.unit_id, { class: 'mono' }) : h('span', { class: 'muted', text: '—' })) };
export const timeColumns = [
  { label: 'Created', class: 'nowrap', text: (t) => format.age(t.created_at) },
  { label: 'Finished', class: 'nowrap', text: (t) => (t.finished_at ? format.age(t.finished_at) : '—') },
];

function statusCell() {
  const el = h('span');
  let last = '';
  return {
    el,
    set(task) {
      if (task.status === last) return;
      last = task.status;
      replace(el, statusBadge(task.status));
    },
  };
}

/**
 * A live, filtered, paged list of tasks (transform or publisher): status (a comma list),
 * queue, media_id and finished_after filters, sort and paging, all kept in the hash; every
 * refresh updates the rows in place. `columns(medias)` are liveTable columns (`medias` is the
 * page's media cache); `mediaIds(task)` the medias a row shows; `summary(page)` the line
 * above the table. Answers `{el, setup (a slot for the page's own loading errors), start()}`.
 */
export function taskList(ctx, { path, queuesPath, noun, sorts, columns, mediaIds, summary: say, caption }) {
  const q = ctx.query;
  const state = {
    status: q.get('status') ?? '',
    queue: q.get('queue') ?? '',
    media_id: q.get('media_id') ?? '',
    finished_after: q.get('finished_after') ?? '',
    sort: q.get('sort') ?? '-created_at',
    skip: Math.max(0, Number.parseInt(q.get('skip') ?? '0', 10) || 0),
  };
  const medias = mediaCache(ctx.signal);
  const listId = `${noun}-queues`;
  // The events that change this list: its kind's tasks (`transform`, `publisher`).
  const kind = path.startsWith('/transform') ? 'transform' : 'publisher';
  const status = field({ label: 'Status', name: 'status', type: 'select', value: state.status, options: statusOptions(state.status) });
  const queue = field({ label: 'Queue', name: 'queue', type: 'search', value: state.queue, attrs: { list: listId, placeholder: 'any queue', autocomplete: 'off' } });
  const queues = h('datalist', { id: listId });
  const sort = field({ label: 'Sort', name: 'sort', type: 'select', value: state.sort, options: sorts });
  const chips = h('div', { class: 'filter-chips' });
  const slot = messageSlot();
  const setup = messageSlot();
  const pagerSlot = h('div');
  const summary = h('p', { class: 'muted task-summary', 'aria-live': 'polite' });
  const table = liveTable(columns(medias), { empty: `No ${noun} matches.`, caption });
  const body = h('div', { class: 'task-list', 'aria-busy': 'true' }, skeleton(5));
  const el = h('div', {}, h('div', { class: 'toolbar' }, status.el, queue.el, sort.el, queues), chips, setup.el, slot.el, summary, body, pagerSlot);

  function drawChips() {
    const items = [];
    if (state.media_id) items.push(chip(['Media: ', mediaLink(state.media_id, medias.get(state.media_id))], 'media_id', 'Clear the media filter'));
    if (state.finished_after) items.push(chip(`Finished after ${format.dateTime(state.finished_after)}`, 'finished_after', 'Clear the finish time filter'));
    replace(chips, items);
  }

  function chip(content, key, clearLabel) {
    return h('span', { class: 'chip' }, content,
      button('Clear', () => { state[key] = ''; state.skip = 0; changed(); }, { kind: 'ghost', small: true, label: clearLabel }));
  }

  let seq = 0;
  let shownPager = '';

  function drawPager(total) {
    const key = `${total}|${state.skip}`;
    if (key === shownPager) return;
    shownPager = key;
    const focused = pagerSlot.contains(document.activeElement) ? document.activeElement.getAttribute('aria-label') : null;
    replace(pagerSlot, total > PAGE || state.skip > 0
      ? pager({ total, limit: PAGE, skip: state.skip, go: (skip) => { state.skip = skip; changed(); } })
      : null);
    if (focused) {
      const again = [...pagerSlot.querySelectorAll('button')].find((b) => b.getAttribute('aria-label') === focused && !b.disabled);
      (again ?? pagerSlot.querySelector('button:not(:disabled)'))?.focus();
    }
  }

  async function refresh() {
    const mine = ++seq;
    const page = await api(path, {
      signal: ctx.signal,
      query: {
        status: state.status, queue: state.queue, media_id: state.media_id,
        finished_after: state.finished_after, sort: state.sort, limit: PAGE, skip: state.skip,
      },
    });
    if (mine !== seq) return;
    if (page.items.length === 0 && state.skip > 0 && page.total > 0) {
      // The page emptied under us (tasks gone or filtered away): go to the last one.
      state.skip = Math.max(0, Math.floor((page.total - 1) / PAGE) * PAGE);
      ctx.setQuery(state);
      await refresh();
      return;
    }
    slot.clear();
    body.removeAttribute('aria-busy');
    if (body.firstChild !== table.el) replace(body, table.el);
    table.update(page.items);
    const said = say(page);
    if (summary.textContent !== said) summary.textContent = said;
    drawPager(page.total);
    // Titles arrive after the rows: the cells that show them change once they are in.
    const ids = page.items.flatMap(mediaIds);
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
      if (e.name !== 'AbortError') slot.show(e, { title: `The ${noun}s could not load` });
    }
  }

  status.input.addEventListener('change', () => { state.status = status.input.value; state.skip = 0; changed(); });
  sort.input.addEventListener('change', () => { state.sort = sort.input.value; state.skip = 0; changed(); });
  let typing = null;
  queue.input.addEventListener('input', () => {
    clearTimeout(typing);
    typing = setTimeout(() => { state.queue = queue.input.value.trim(); state.skip = 0; changed(); }, 300);
  });

  async function start() {
    api(queuesPath, { signal: ctx.signal })
      .then((page) => replace(queues, page.items.map((qv) => h('option', { value: qv.name }))))
      .catch((e) => { if (e.name !== 'AbortError') setup.show(e, { title: 'The queues could not load' }); });
    drawChips();
    try {
      await refresh();
    } catch (e) {
      if (e.name === 'AbortError') return;
      replace(body, errorBox(e, { title: `The ${noun}s could not load` }));
    }
    // Live: the rows change in place; a failed refresh keeps the last rows and says why.
    ctx.every(REFRESH_MS, async () => {
      try {
        await refresh();
      } catch (e) {
        if (e.name !== 'AbortError') slot.show(e, { title: `The ${noun}s could not refresh` });
      }
    }, (e) => e.type.startsWith('unit.') || (e.type.startsWith('task.') && e.task_kind === kind));
  }

  return { el, setup, start };
}

export async function render(ctx) {
  let profiles = new Map();
  const list = taskList(ctx, {
    path: '/transform/tasks',
    queuesPath: '/transform/queues',
    noun: 'task',
    caption: 'Transform tasks',
    sorts: SORTS,
    mediaIds: (t) => [t.media_in_id, t.media_out_id],
    summary: (page) => {
      const running = page.items.filter((t) => RUNNING.includes(t.status)).length;
      return `${page.total} task${page.total === 1 ? '' : 's'}${running ? `, ${running} running on this page` : ''}.`;
    },
    columns: (medias) => [
      {
        label: 'Output', key: (t) => `${format.title(medias.get(t.media_out_id))}|${medias.get(t.media_out_id)?.filename}`,
        node: (t) => {
          const out = medias.get(t.media_out_id);
          return [
            link(`/tasks/${t.id}`, out && !out.unreadable ? format.title(out) : `Task ${t.id.slice(0, 8)}`, { class: 'task-link' }),
            out && !out.unreadable ? h('span', { class: 'sub' }, mediaLink(t.media_out_id, out, { filename: true })) : null,
          ];
        },
      },
      { label: 'Input', key: (t) => format.title(medias.get(t.media_in_id)), node: (t) => mediaLink(t.media_in_id, medias.get(t.media_in_id)) },
      { label: 'Profile', key: (t) => profiles.get(t.profile_id)?.title ?? '', node: (t) => link(`/profiles/${t.profile_id}`, profiles.get(t.profile_id)?.title ?? `${t.profile_id.slice(0, 8)}…`) },
      { label: 'Queue', text: (t) => t.queue },
      { label: 'Priority', class: 'num', text: (t) => t.priority },
      { label: 'Status', live: statusCell },
      { label: 'Progress', class: 'progress-col', live: progressCell },
      { label: 'Attempt', class: 'num', text: (t) => t.attempt },
      unitColumn,
      ...timeColumns,
    ],
  });
  replace(ctx.main, pageHeader('Transform tasks', link('/tasks/new', 'Launch a transform', { class: 'btn btn-primary' })), list.el);
  try {
    profiles = new Map((await all('/transform/profiles', {}, ctx.signal)).map((p) => [p.id, p]));
  } catch (e) {
    if (e.name === 'AbortError') return;
    list.setup.show(e, { title: 'The profiles could not load' });
  }
  await list.start();
}
