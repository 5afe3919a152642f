// Medias: upload (picker and drag-and-drop, one progress bar per file) and the list, searched,
// filtered, sorted and paged by the API (50 a page), its state kept in the address bar so a
// reload or a deep link (`#/medias?q=x&status=READY&sort=-size&skip=50`) shows the same page.

import { api } from '../api.js';
import { h, replace } from '../dom.js';
import { bytes, dateTime, duration, hasVideo, resolution, title } from '../format.js';
import { dataTable, errorBox, field, link, pageHeader, pager, skeleton, statusBadge } from '../ui.js';
import { uploadPanel } from '../upload.js';

const LIMIT = 50;

const STATUSES = [
  { value: '', label: 'Pending and ready' },
  { value: 'READY', label: 'Ready' },
  { value: 'PENDING', label: 'Pending' },
  { value: 'DELETED', label: 'Deleted' },
  { value: 'PENDING,READY,DELETED', label: 'Every status' },
];

const SORTS = [
  { value: '-created_at', label: 'Newest first' },
  { value: 'created_at', label: 'Oldest first' },
  { value: '-updated_at', label: 'Recently changed' },
  { value: 'title', label: 'Title A–Z' },
  { value: '-title', label: 'Title Z–A' },
  { value: '-duration', label: 'Longest' },
  { value: 'duration', label: 'Shortest' },
  { value: '-size', label: 'Largest' },
  { value: 'size', label: 'Smallest' },
  { value: 'filename', label: 'File name A–Z' },
  { value: 'status', label: 'Status' },
];

/** Options for a select, plus the current value when a link brought one the list lacks. */
function optionsWith(options, value) {
  return options.some((o) => o.value === value) ? options : [...options, { value, label: value }];
}

/** The thumbnail, or a placeholder for a media without a picture (or whose picture fails). */
export function thumbnail(media) {
  const none = () => h('span', { class: 'thumb-none', 'aria-hidden': 'true', text: media.status === 'PENDING' ? 'pending' : hasVideo(media) ? 'no preview' : 'no video' });
  if (media.status !== 'READY' || !hasVideo(media)) return none();
  const img = h('img', { class: 'thumb', loading: 'lazy', alt: '', width: 96, height: 54, src: `/api/v1/medias/${encodeURIComponent(media.id)}/thumbnail` });
  img.addEventListener('error', () => img.replaceWith(none()), { once: true });
  return img;
}

function mediaTable(items) {
  return dataTable([
    { label: 'Preview', class: 'thumb-cell', cell: thumbnail },
    { label: 'Title', class: 'title-cell', cell: (m) => link(`/medias/${encodeURIComponent(m.id)}`, title(m)) },
    { label: 'Duration', class: 'num', cell: (m) => duration(m.duration) },
    { label: 'Resolution', class: 'num', cell: resolution },
    { label: 'Size', class: 'num', cell: (m) => (m.status === 'READY' ? bytes(m.size) : '—') },
    { label: 'Status', class: 'status-cell', cell: (m) => statusBadge(m.status) },
    { label: 'Created', class: 'nowrap created-cell', cell: (m) => h('time', { dateTime: m.created_at, text: dateTime(m.created_at) }) },
  ], items, { empty: 'No media matches.', caption: 'Medias' });
}

/** A removable filter that came from a link (children of a media, one owner's medias). */
function chip(text, onRemove) {
  return h('span', { class: 'chip' }, h('span', { text }),
    h('button', { type: 'button', class: 'chip-remove', 'aria-label': `Remove the filter: ${text}`, text: '×', on: { click: onRemove } }));
}

export async function render(ctx) {
  const state = {
    q: ctx.query.get('q') || '',
    status: ctx.query.get('status') || '',
    sort: ctx.query.get('sort') || '-created_at',
    skip: Math.max(0, Number.parseInt(ctx.query.get('skip') || '0', 10) || 0),
    parent_id: ctx.query.get('parent_id') || '',
    user_id: ctx.query.get('user_id') || '',
  };

  const search = field({ label: 'Search titles', name: 'q', type: 'search', value: state.q, attrs: { placeholder: 'Title contains…', autocomplete: 'off' } });
  search.el.classList.add('grow');
  const status = field({ label: 'Status', name: 'status', type: 'select', value: state.status, options: optionsWith(STATUSES, state.status) });
  const sort = field({ label: 'Sort', name: 'sort', type: 'select', value: state.sort, options: optionsWith(SORTS, state.sort) });
  const chips = h('div', { class: 'chips' });
  const count = h('p', { class: 'muted list-count', 'aria-live': 'polite' });
  const list = h('div', { class: 'media-list' }, skeleton(6));
  const pagerSlot = h('div', {});

  function keep() {
    ctx.setQuery({
      q: state.q, status: state.status, sort: state.sort === '-created_at' ? '' : state.sort,
      skip: state.skip || '', parent_id: state.parent_id, user_id: state.user_id,
    });
  }

  function drawChips() {
    replace(chips,
      state.parent_id ? chip(`Made from ${state.parent_id}`, () => { state.parent_id = ''; state.skip = 0; drawChips(); load(); }) : null,
      state.user_id ? chip(`Owner ${state.user_id}`, () => { state.user_id = ''; state.skip = 0; drawChips(); load(); }) : null);
    chips.hidden = !state.parent_id && !state.user_id;
  }

  // Only the newest answer is shown: a slow page must not replace the one asked after it.
  let inflight = null;
  let shown = '';
  async function load({ quiet = false } = {}) {
    keep();
    inflight?.abort();
    const mine = new AbortController();
    inflight = mine;
    const signal = AbortSignal.any ? AbortSignal.any([ctx.signal, mine.signal]) : ctx.signal;
    if (!quiet) list.setAttribute('aria-busy', 'true');
    try {
      const page = await api('/medias', {
        signal,
        query: {
          q: state.q.trim(), status: state.status, sort: state.sort, limit: LIMIT, skip: state.skip,
          parent_id: state.parent_id, user_id: state.user_id,
        },
      });
      if (mine !== inflight) return;
      // Past the end (the list shrank, or an old deep link): show the last page instead.
      if (page.items.length === 0 && state.skip > 0 && page.total > 0) {
        state.skip = Math.floor((page.total - 1) / LIMIT) * LIMIT;
        await load();
        return;
      }
      // A quiet refresh redraws only when something changed: the rows keep their nodes.
      const fingerprint = JSON.stringify([page.total, page.items.map((m) => [m.id, m.status, m.updated_at])]);
      if (quiet && fingerprint === shown) return;
      shown = fingerprint;
      count.textContent = page.total === 1 ? '1 media' : `${page.total.toLocaleString('en')} medias`;
      // Keep the keyboard where it was: the same link of the same row, if it is still shown.
      const focused = list.contains(document.activeElement) ? document.activeElement.closest('tr')?.dataset.id : null;
      replace(list, mediaTable(page.items));
      if (focused) list.querySelector(`tr[data-id="${CSS.escape(focused)}"] a`)?.focus();
      replace(pagerSlot, page.total > LIMIT ? pager({
        total: page.total, limit: LIMIT, skip: state.skip,
        go(skip) {
          state.skip = skip;
          load().then(() => ctx.main.querySelector('.media-list')?.scrollIntoView({ block: 'start' }));
        },
      }) : null);
      pending = page.items.some((m) => m.status === 'PENDING');
    } catch (e) {
      if (e.name === 'AbortError') return;
      if (mine !== inflight) return;
      shown = '';
      replace(list, errorBox(e, { title: 'The medias could not be listed' }));
      replace(pagerSlot);
    } finally {
      if (mine === inflight) list.removeAttribute('aria-busy');
    }
  }
  let pending = false;

  let debounce = null;
  search.input.addEventListener('input', () => {
    clearTimeout(debounce);
    debounce = setTimeout(() => {
      if (search.input.value === state.q) return;
      state.q = search.input.value;
      state.skip = 0;
      load();
    }, 300);
  });
  search.input.addEventListener('keydown', (e) => {
    if (e.key !== 'Enter') return;
    clearTimeout(debounce);
    state.q = search.input.value;
    state.skip = 0;
    load();
  });
  ctx.signal.addEventListener('abort', () => clearTimeout(debounce), { once: true });
  // A filter change takes the search box as it reads now, typed or not yet sent.
  const refilter = () => {
    clearTimeout(debounce);
    Object.assign(state, { q: search.input.value, status: status.input.value, sort: sort.input.value, skip: 0 });
    load();
  };
  status.input.addEventListener('change', refilter);
  sort.input.addEventListener('change', refilter);

  // A finished upload joins the list; several finishing together make one refresh.
  let refresh = null;
  const onUploaded = () => {
    clearTimeout(refresh);
    refresh = setTimeout(() => load({ quiet: true }), 150);
  };
  ctx.signal.addEventListener('abort', () => clearTimeout(refresh), { once: true });

  const toolbar = h('form', { class: 'toolbar', role: 'search', 'aria-label': 'Filter medias', on: { submit: (e) => e.preventDefault() } },
    search.el, status.el, sort.el);
  replace(ctx.main,
    pageHeader('Medias'),
    h('section', { class: 'card', 'aria-labelledby': 'upload-title' },
      h('h2', { id: 'upload-title', text: 'Upload' }),
      // Medias belong to users; the API refuses root's uploads (403), so say so up front.
      ctx.me?.root
        ? h('p', { class: 'muted', text: 'root owns no medias: sign in as a user to upload. root sees every user\'s medias below.' })
        : uploadPanel({ onUploaded, signal: ctx.signal })),
    h('section', { 'aria-labelledby': 'list-title' },
      h('div', { class: 'list-head' }, h('h2', { id: 'list-title', text: 'Library' }), count),
      toolbar, chips, list, pagerSlot));
  drawChips();
  await load();
  // Transform outputs turn READY by themselves: while the page shows a PENDING one, look again.
  ctx.every(4000, async ({ live }) => {
    if (pending || live) await load({ quiet: true });
  }, (e) => e.type.startsWith('media.'));
}
