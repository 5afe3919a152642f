// Transform profiles: every profile (all users see all of them), built-ins marked, paged and
// searchable through the API; edit and delete where the API would allow it.

import { api } from '../api.js';
import { h, replace } from '../dom.js';
import { busy, button, confirmDialog, dataTable, errorBox, field, link, messageSlot, pageHeader, pager, skeleton } from '../ui.js';

const PAGE = 25;

/** What the API allows: owners change their profiles, admins any (built-ins included). */
export function canChange(ctx, profile) {
  return ctx.isAdmin || (profile.user_id !== null && profile.user_id === ctx.me?.id);
}

export function builtinBadge() {
  return h('span', { class: 'badge badge-plain', text: 'built-in' });
}

export async function render(ctx) {
  const state = {
    q: ctx.query.get('q') ?? '',
    sort: ctx.query.get('sort') ?? 'title',
    skip: Math.max(0, Number.parseInt(ctx.query.get('skip') ?? '0', 10) || 0),
  };
  const search = field({ label: 'Search titles', name: 'q', type: 'search', value: state.q, attrs: { autocomplete: 'off' } });
  search.el.classList.add('grow');
  const sort = field({
    label: 'Sort', name: 'sort', type: 'select', value: state.sort,
    options: [{ value: 'title', label: 'Title' }, { value: '-created_at', label: 'Newest first' }, { value: 'encoder_name', label: 'Encoder' }],
  });
  const slot = messageSlot();
  const body = h('div', { 'aria-busy': 'true' }, skeleton(5));
  replace(ctx.main,
    pageHeader('Profiles', link('/profiles/new', 'New profile', { class: 'btn btn-primary' })),
    h('p', { class: 'muted', text: 'A profile is an encoder and its options; transforms run one on a media. Built-in profiles are shared by everyone and changed by admins only.' }),
    h('div', { class: 'toolbar' }, search.el, sort.el), slot.el, body);

  const owners = new Map();
  async function ownerOf(p) {
    if (p.user_id === null) return builtinBadge();
    if (p.user_id === ctx.me?.id) return 'you';
    if (!ctx.isAdmin) return h('span', { class: 'muted', text: 'another user' });
    if (!owners.has(p.user_id)) {
      owners.set(p.user_id, api(`/users/${p.user_id}`, { signal: ctx.signal }).then((u) => u.name).catch((e) => {
        if (e.name === 'AbortError') throw e;
        return `${p.user_id.slice(0, 8)}… (${e.message})`;
      }));
    }
    return owners.get(p.user_id);
  }

  let seq = 0;
  async function load() {
    const mine = ++seq;
    ctx.setQuery({ q: state.q, sort: state.sort === 'title' ? '' : state.sort, skip: state.skip || '' });
    body.setAttribute('aria-busy', 'true');
    const page = await api('/transform/profiles', { signal: ctx.signal, query: { q: state.q, sort: state.sort, limit: PAGE, skip: state.skip } });
    const ownerNames = await Promise.all(page.items.map(ownerOf));
    if (mine !== seq) return;
    const rows = page.items.map((p, i) => ({ ...p, owner: ownerNames[i] }));
    replace(body,
      dataTable([
        { label: 'Title', cell: (p) => [link(`/profiles/${p.id}`, p.title), p.description ? h('span', { class: 'sub muted', text: p.description }) : null] },
        { label: 'Encoder', cell: (p) => p.encoder_name },
        { label: 'Encoder string', class: 'encoder-col', cell: (p) => (p.encoder_name === 'copy' ? h('span', { class: 'muted', text: '(copies the file)' }) : h('code', { class: 'encoder-string', text: p.encoder_string || '(none)' })) },
        { label: 'Owner', cell: (p) => p.owner },
        {
          label: 'Actions', cell: (p) => h('div', { class: 'actions' },
            link(`/tasks/new?profile=${p.id}`, 'Use', { class: 'btn btn-small', 'aria-label': `Use ${p.title} in a transform` }),
            canChange(ctx, p) ? [
              link(`/profiles/${p.id}`, 'Edit', { class: 'btn btn-small', 'aria-label': `Edit ${p.title}` }),
              button('Delete', (e) => remove(e.currentTarget, p), { kind: 'danger', small: true, label: `Delete ${p.title}` }),
            ] : null),
        },
      ], rows, { empty: state.q ? 'No profile title matches.' : 'No profile yet.', caption: 'Transform profiles' }),
      page.total > PAGE || state.skip > 0 ? pager({ total: page.total, limit: PAGE, skip: state.skip, go: (skip) => { state.skip = skip; reload(); } }) : null);
    body.removeAttribute('aria-busy');
  }

  async function reload() {
    try {
      slot.clear();
      await load();
    } catch (e) {
      if (e.name !== 'AbortError') replace(body, errorBox(e, { title: 'The profiles could not load' }));
    }
  }

  async function remove(btn, p) {
    const ok = await confirmDialog(`Delete the profile ${p.title}? Tasks that used it keep their outputs.`, { confirm: 'Delete profile', title: 'Delete the profile?' });
    if (!ok) return;
    await busy(btn, async () => {
      try {
        await api(`/transform/profiles/${p.id}`, { method: 'DELETE', signal: ctx.signal });
        slot.ok(`Profile ${p.title} deleted.`);
        await load();
      } catch (e) {
        if (e.name !== 'AbortError') slot.show(e, { title: `${p.title} was not deleted` });
      }
    });
  }

  let typing = null;
  search.input.addEventListener('input', () => {
    clearTimeout(typing);
    typing = setTimeout(() => { state.q = search.input.value.trim(); state.skip = 0; reload(); }, 250);
  });
  sort.input.addEventListener('change', () => { state.sort = sort.input.value; state.skip = 0; reload(); });
  await reload();
}
