// Units: every worker unit the orchestra knows, live. Admins can forget one that is gone.

import { api } from '../api.js';
import { h, replace } from '../dom.js';
import * as format from '../format.js';
import { button, confirmAndRun, dataTable, errorBox, field, link, messageSlot, pageHeader, skeleton, statusBadge } from '../ui.js';

function taskLink(unit, id) {
  const base = unit.kind === 'publisher' ? '/publications' : '/tasks';
  return link(`${base}/${id}`, id.slice(0, 8), { class: 'mono', title: id, 'aria-label': `task ${id}` });
}

export async function render(ctx) {
  const slot = messageSlot();
  const filter = field({
    label: 'Show', name: 'online', type: 'select', value: ctx.query.get('online') ?? '',
    options: [{ value: '', label: 'All units' }, { value: 'true', label: 'Online' }, { value: 'false', label: 'Offline' }],
  });
  const body = h('div', {}, skeleton(3));
  replace(ctx.main, pageHeader('Units'),
    h('p', { class: 'muted', text: 'Transform and publisher units register with their heartbeats. A unit is offline after three missed heartbeats.' }),
    h('div', { class: 'toolbar' }, filter.el), slot.el, body);

  let units = [];
  let shape = '';
  const ages = new Map();

  function draw() {
    const want = filter.input.value;
    const shown = units.filter((u) => want === '' || String(u.online) === want);
    ages.clear();
    const table = dataTable([
      { label: 'Unit', cell: (u) => h('span', { class: 'mono', text: u.id }) },
      { label: 'Kind', cell: (u) => u.kind },
      { label: 'Host', cell: (u) => u.hostname },
      { label: 'Queues', cell: (u) => u.queues.join(', ') },
      { label: 'Slots', class: 'num', cell: (u) => String(u.concurrency) },
      { label: 'Running', cell: (u) => (u.running_tasks.length ? h('span', { class: 'task-links' }, u.running_tasks.map((id) => taskLink(u, id))) : h('span', { class: 'muted', text: 'idle' })) },
      { label: 'ffmpeg', cell: (u) => u.ffmpeg_version || '—' },
      { label: 'Version', cell: (u) => u.version },
      {
        label: 'Last heartbeat', class: 'nowrap', cell: (u) => {
          const el = h('time', { dateTime: u.last_heartbeat, title: format.dateTime(u.last_heartbeat), text: format.age(u.last_heartbeat) });
          ages.set(u.id, el);
          return el;
        },
      },
      { label: 'State', cell: (u) => statusBadge(u.online ? 'online' : 'offline') },
      ...(ctx.isAdmin ? [{
        label: 'Actions', cell: (u) => (u.online ? '' : button('Forget', (e) => forget(e.currentTarget, u), { kind: 'danger', small: true, label: `Forget unit ${u.id}` })),
      }] : []),
    ], shown, { empty: want === '' ? 'No unit has registered yet.' : 'No unit matches.', caption: 'Units' });
    replace(body, table);
  }

  async function forget(btn, unit) {
    await confirmAndRun(btn, `Forget ${unit.kind} unit ${unit.id} on ${unit.hostname}? Tasks it held are taken back and its publications end REVOKED.`,
      { confirm: 'Forget unit', failed: `Unit ${unit.id} was not forgotten`, slot }, async () => {
        const gone = await api(`/units/${encodeURIComponent(unit.id)}`, { method: 'DELETE', signal: ctx.signal });
        slot.ok(`Unit ${gone.id} forgotten: ${gone.tasks_taken_back.length} task(s) taken back, ${gone.publications_revoked.length} publication(s) revoked.`);
        await load();
      });
  }

  async function load() {
    const page = await api('/units', { signal: ctx.signal });
    units = page.items;
    // Redraw only when something but the heartbeat ages changed, so focus and scroll stay.
    const next = JSON.stringify(units.map((u) => ({ ...u, last_heartbeat: undefined })));
    if (next !== shape) {
      shape = next;
      draw();
    } else {
      for (const u of units) {
        const el = ages.get(u.id);
        if (el) el.textContent = format.age(u.last_heartbeat);
      }
    }
  }

  filter.input.addEventListener('change', () => {
    ctx.setQuery({ online: filter.input.value });
    draw();
  });
  try {
    await load();
  } catch (e) {
    if (e.name === 'AbortError') return;
    replace(body, errorBox(e, { title: 'The units could not load' }));
  }
  // Heartbeat ages change with no event: polled even with the stream up.
  ctx.every(2000, load, (e) => e.type.startsWith('unit.') || e.type === 'task.status' || e.type === 'task.finished', { poll: true });
}
