// Shared pieces of every page: headings, errors, spinners, badges, progress bars, tables,
// forms with per-field errors, a confirmation dialog, paging and toasts.

import { h, replace, uid } from './dom.js';

/** The page's heading row: an h1 and optional actions on the right. */
export function pageHeader(title, ...actions) {
  return h('div', { class: 'page-header' }, h('h1', { text: title, tabindex: -1 }), h('div', { class: 'actions' }, actions));
}

export function spinner(label = 'Loading…') {
  return h('div', { class: 'spinner-row', role: 'status' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), h('span', { text: label }));
}

/** A skeleton table while a list loads. */
export function skeleton(rows = 5) {
  return h('div', { class: 'skeleton', role: 'status', 'aria-label': 'Loading' },
    Array.from({ length: rows }, () => h('div', { class: 'skeleton-line' })));
}

/** An error as the page shows it: the API's message, and its code and status for operators. */
export function errorBox(error, { title } = {}) {
  const status = error?.status ? ` (${error.status}${error.code ? ` ${error.code}` : ''})` : '';
  return h('div', { class: 'alert error', role: 'alert' },
    title ? h('strong', { text: `${title}: ` }) : null,
    h('span', { text: error?.message || String(error) }),
    status ? h('span', { class: 'muted', text: status }) : null);
}

/** A place in the page for the outcome of an action: `show(error)`, `ok(text)`, `clear()`. */
export function messageSlot() {
  const el = h('div', { class: 'message-slot', 'aria-live': 'polite' });
  return {
    el,
    show(error, opts) { replace(el, errorBox(error, opts)); },
    ok(text) { replace(el, h('div', { class: 'alert ok', role: 'status', text })); },
    clear() { el.replaceChildren(); },
  };
}

const STATUS_KIND = {
  READY: 'ok', SUCCESS: 'ok', PENDING: 'wait', STARTED: 'run', PROGRESS: 'run', RETRY: 'warn',
  REVOKING: 'warn', REVOKED: 'muted', FAILURE: 'bad', DELETED: 'muted', online: 'ok', offline: 'bad',
};

export function statusBadge(status) {
  return h('span', { class: ['badge', `badge-${STATUS_KIND[status] || 'muted'}`], text: status });
}

/**
 * A progress bar that updates in place (no flicker): `bar.el`, `bar.set(percent, text)`.
 * `percent` null shows an indeterminate bar.
 */
export function progressBar(label) {
  const id = uid('progress');
  const meter = h('progress', { id, max: 100, 'aria-label': label });
  const text = h('span', { class: 'progress-text', 'aria-hidden': 'true' });
  const el = h('div', { class: 'progress' }, meter, text);
  return {
    el,
    set(percent, caption) {
      if (percent === null || percent === undefined) meter.removeAttribute('value');
      else meter.value = Math.max(0, Math.min(100, percent));
      const shown = caption ?? (percent === null || percent === undefined ? '' : `${Math.round(percent)} %`);
      if (text.textContent !== shown) text.textContent = shown;
    },
  };
}

/**
 * A data table. `columns`: [{label, cell: (row) => node|string, class?}]; `empty`: text when
 * no rows. Rows get `data-id` so pages can update them in place.
 */
export function dataTable(columns, rows, { empty = 'Nothing here yet.', caption } = {}) {
  if (!rows.length) return h('p', { class: 'empty', text: empty });
  return h('div', { class: 'table-wrap' },
    h('table', { class: 'data' },
      caption ? h('caption', { class: 'sr-only', text: caption }) : null,
      h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col', class: c.class, text: c.label })))),
      h('tbody', {}, rows.map((row) => h('tr', { dataset: { id: row.id ?? '' } },
        columns.map((c) => h('td', { class: c.class, 'data-label': c.label }, c.cell(row))))))));
}

/** Key/value pairs as a description list. */
export function facts(pairs) {
  return h('dl', { class: 'facts' }, pairs.filter(Boolean).map(([key, value]) => [h('dt', { text: key }), h('dd', {}, value ?? '—')]));
}

/**
 * A labelled form control. `type`: text, password, email, number, textarea, select, checkbox.
 * Answers `{el, input, setError(message)}`; the error shows under the control and is
 * wired with aria-describedby / aria-invalid.
 */
export function field({ label, name, type = 'text', value = '', required = false, hint, options = [], attrs = {} }) {
  const id = uid(name);
  const errorId = `${id}-error`;
  const hintId = hint ? `${id}-hint` : null;
  let input;
  if (type === 'textarea') input = h('textarea', { id, name, required, value, attrs });
  else if (type === 'select') {
    input = h('select', { id, name, required, attrs },
      options.map((o) => h('option', { value: o.value, text: o.label, selected: String(o.value) === String(value) })));
  } else input = h('input', { id, name, type, required, attrs, ...(type === 'checkbox' ? { checked: Boolean(value) } : { value }) });
  if (hintId) input.setAttribute('aria-describedby', hintId);
  const error = h('p', { class: 'field-error', id: errorId, hidden: true });
  const labelEl = h('label', { for: id, text: label });
  const el = h('div', { class: ['field', type === 'checkbox' ? 'field-check' : null] },
    type === 'checkbox' ? [input, labelEl] : [labelEl, input],
    hint ? h('p', { class: 'hint', id: hintId }, hint) : null, error);
  return {
    el,
    input,
    setError(message) {
      error.textContent = message || '';
      error.hidden = !message;
      if (message) {
        input.setAttribute('aria-invalid', 'true');
        input.setAttribute('aria-describedby', [hintId, errorId].filter(Boolean).join(' '));
      } else {
        input.removeAttribute('aria-invalid');
        if (hintId) input.setAttribute('aria-describedby', hintId);
        else input.removeAttribute('aria-describedby');
      }
    },
  };
}

/**
 * Show an API error on a form: next to the field the API names (`error.field`, or a field
 * whose name the message starts with), else in the form's message slot.
 */
export function showFormError(fields, slot, error) {
  for (const f of Object.values(fields)) f.setError(null);
  slot.clear();
  const byName = Object.fromEntries(Object.values(fields).map((f) => [f.input.name, f]));
  const target = byName[error?.field];
  if (target) {
    target.setError(error.message);
    target.input.focus();
  } else slot.show(error);
}

/** A button; `kind`: primary, danger, ghost or plain. */
export function button(text, onClick, { kind = 'plain', type = 'button', label, attrs, small = false } = {}) {
  return h('button', { type, class: ['btn', `btn-${kind}`, small && 'btn-small'], text, 'aria-label': label, attrs, on: onClick ? { click: onClick } : {} });
}

/**
 * Run `work` while `btn` shows it is busy (disabled, aria-busy), so a double click sends one
 * call and the operator sees something happen.
 */
export async function busy(btn, work) {
  btn.disabled = true;
  btn.setAttribute('aria-busy', 'true');
  btn.classList.add('is-busy');
  try {
    return await work();
  } finally {
    btn.disabled = false;
    btn.removeAttribute('aria-busy');
    btn.classList.remove('is-busy');
  }
}

/** Ask before something that cannot be undone. Resolves true on confirm; Escape cancels. */
export function confirmDialog(message, { confirm = 'Confirm', danger = true, title = 'Are you sure?' } = {}) {
  return new Promise((resolve) => {
    const headingId = uid('dialog');
    const ok = button(confirm, () => close(true), { kind: danger ? 'danger' : 'primary' });
    const cancel = button('Cancel', () => close(false));
    const dialog = h('dialog', { class: 'dialog', 'aria-labelledby': headingId },
      h('h2', { id: headingId, text: title }), h('p', { text: message }), h('div', { class: 'actions' }, cancel, ok));
    const opener = document.activeElement;
    function close(answer) {
      dialog.close();
      dialog.remove();
      if (opener && opener.isConnected) opener.focus();
      resolve(answer);
    }
    dialog.addEventListener('cancel', (e) => { e.preventDefault(); close(false); });
    document.body.append(dialog);
    dialog.showModal();
    cancel.focus();
  });
}

/**
 * Ask before an action, then run `work` on the busy `btn`; its error shows in `slot`, titled
 * `failed`. Every destructive button of the UI goes through here.
 */
export async function confirmAndRun(btn, message, { confirm, title, failed, slot }, work) {
  if (!(await confirmDialog(message, { confirm, title }))) return;
  await busy(btn, async () => {
    try {
      await work();
    } catch (e) {
      if (e.name !== 'AbortError') slot.show(e, { title: failed });
    }
  });
}

/** Previous/next paging for `{total}` with `limit`/`skip`; `go(skip)` loads another page. */
export function pager({ total, limit, skip, go }) {
  const first = total === 0 ? 0 : skip + 1;
  const last = Math.min(skip + limit, total);
  const prev = button('Previous', () => go(Math.max(0, skip - limit)), { label: 'Previous page' });
  const next = button('Next', () => go(skip + limit), { label: 'Next page' });
  prev.disabled = skip === 0;
  next.disabled = skip + limit >= total;
  return h('nav', { class: 'pager', 'aria-label': 'Pages' },
    h('span', { class: 'muted', text: `${first}–${last} of ${total}` }), prev, next);
}

/** A short note in the corner; errors stay until dismissed. */
export function toast(text, kind = 'ok') {
  const box = document.getElementById('toasts');
  if (!box) return;
  const close = button('Dismiss', () => item.remove(), { kind: 'ghost', label: 'Dismiss message' });
  const item = h('div', { class: ['toast', `toast-${kind}`] }, h('span', { text }), close);
  box.append(item);
  if (kind !== 'error') setTimeout(() => item.remove(), 5000);
}

/** A link inside the app: `#/medias/<id>`. */
export function link(path, text, attrs = {}) {
  return h('a', { href: `#${path}`, ...attrs }, text);
}

/**
 * A table that live pages update in place: `table.update(rows)` keeps each row's nodes
 * (matched by `row.id`), changes only what changed, adds and removes rows when the set
 * changes and moves them only when the order changes, so a refresh neither flickers nor
 * takes the focus away. Same markup as dataTable() (cards on phones).
 * `columns`: [{label, class?, text?: (row) => string, node?: (row) => Node, key?: (row) => string,
 * live?: () => ({el, set(row)})}]: `text` sets the cell's text, `node` replaces the cell's
 * content when `key(row)` changes, `live` is a widget made once per row and told each row.
 */
export function liveTable(columns, { empty = 'Nothing here yet.', caption } = {}) {
  const tbody = h('tbody');
  const wrap = h('div', { class: 'table-wrap' },
    h('table', { class: 'data' },
      caption ? h('caption', { class: 'sr-only', text: caption }) : null,
      h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col', class: c.class, text: c.label })))),
      tbody));
  const none = h('p', { class: 'empty', text: empty });
  const el = h('div', { class: 'live-table' }, none);
  const rows = new Map();

  function makeRow(row) {
    const tr = h('tr', { dataset: { id: row.id ?? '' } });
    const cells = columns.map((c) => {
      const td = h('td', { class: c.class, 'data-label': c.label });
      tr.append(td);
      if (c.live) {
        const widget = c.live();
        td.append(widget.el);
        return (r) => widget.set(r);
      }
      let last;
      return (r) => {
        if (c.text) {
          const value = String(c.text(r) ?? '');
          if (td.textContent !== value) td.textContent = value;
          return;
        }
        const key = c.key ? String(c.key(r)) : null;
        if (last !== undefined && key !== null && key === last) return;
        last = key;
        replace(td, c.node(r));
      };
    });
    return { tr, cells };
  }

  return {
    el,
    /** Show these rows, in this order. */
    update(list) {
      const seen = new Set();
      list.forEach((row, index) => {
        seen.add(row.id);
        let entry = rows.get(row.id);
        if (!entry) {
          entry = makeRow(row);
          rows.set(row.id, entry);
        }
        entry.cells.forEach((set) => set(row));
        if (tbody.children[index] !== entry.tr) tbody.insertBefore(entry.tr, tbody.children[index] ?? null);
      });
      for (const [id, entry] of rows) {
        if (!seen.has(id)) {
          entry.tr.remove();
          rows.delete(id);
        }
      }
      const target = list.length ? wrap : none;
      if (el.firstChild !== target) replace(el, target);
    },
  };
}

/**
 * facts() for live pages: the labels once, then `set(label, value, key)` changes one value in
 * place. A string becomes the text; a node (or array) replaces the value when `key` changes
 * (every time without a key). `show(label, visible)` hides a pair that does not apply.
 */
export function liveFacts(labels) {
  const pairs = new Map();
  const el = h('dl', { class: 'facts' });
  for (const label of labels) {
    const dt = h('dt', { text: label });
    const dd = h('dd', { text: '—' });
    el.append(dt, dd);
    pairs.set(label, { dt, dd, key: undefined });
  }
  return {
    el,
    set(label, value, key) {
      const pair = pairs.get(label);
      if (!pair) return;
      if (value === null || value === undefined || value === '') value = '—';
      if (typeof value === 'string' || typeof value === 'number') {
        pair.key = undefined;
        if (pair.dd.textContent !== String(value) || pair.dd.children.length) replace(pair.dd, String(value));
        return;
      }
      if (key !== undefined && pair.key === key) return;
      pair.key = key;
      replace(pair.dd, value);
    },
    show(label, visible) {
      const pair = pairs.get(label);
      if (pair) pair.dt.hidden = pair.dd.hidden = !visible;
    },
  };
}
