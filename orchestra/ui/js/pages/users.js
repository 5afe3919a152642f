// Users (admins): list and search accounts, create one, make or unmake admins, delete.

import { api } from '../api.js';
import { h, replace } from '../dom.js';
import * as format from '../format.js';
import { busy, button, confirmAndRun, dataTable, errorBox, field, messageSlot, pageHeader, pager, showFormError, skeleton } from '../ui.js';

const LIMIT = 50;

function createForm(onCreated) {
  const slot = messageSlot();
  const fields = {
    first_name: field({ label: 'First name', name: 'first_name', required: true, attrs: { autocomplete: 'off' } }),
    last_name: field({ label: 'Last name', name: 'last_name', required: true, attrs: { autocomplete: 'off' } }),
    mail: field({ label: 'Mail', name: 'mail', type: 'email', required: true, attrs: { autocomplete: 'off' } }),
    secret: field({ label: 'Secret', name: 'secret', type: 'password', required: true, hint: '8 characters or more. Give it to the user through a safe channel.', attrs: { autocomplete: 'new-password' } }),
    admin_platform: field({ label: 'Administrator', name: 'admin_platform', type: 'checkbox' }),
  };
  const submit = button('Create user', null, { kind: 'primary', type: 'submit' });
  const form = h('form', { class: 'form', 'aria-labelledby': 'new-user-title', novalidate: true },
    slot.el,
    h('div', { class: 'form-row' }, fields.first_name.el, fields.last_name.el),
    h('div', { class: 'form-row' }, fields.mail.el, fields.secret.el),
    fields.admin_platform.el,
    h('div', { class: 'actions' }, submit));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    busy(submit, async () => {
      try {
        const user = await api('/users', {
          method: 'POST',
          json: {
            first_name: fields.first_name.input.value,
            last_name: fields.last_name.input.value,
            mail: fields.mail.input.value,
            secret: fields.secret.input.value,
            admin_platform: fields.admin_platform.input.checked,
          },
        });
        for (const f of Object.values(fields)) f.setError(null);
        form.reset();
        slot.ok(`User ${user.mail} created.`);
        onCreated(user);
      } catch (err) {
        showFormError(fields, slot, err);
      }
    });
  });
  return h('section', { class: 'card', 'aria-labelledby': 'new-user-title' }, h('h2', { id: 'new-user-title', text: 'New user' }), form);
}

export async function render(ctx) {
  const state = { q: ctx.query.get('q') ?? '', skip: Number(ctx.query.get('skip')) || 0 };
  const slot = messageSlot();
  const search = field({ label: 'Search mail or name', name: 'q', type: 'search', value: state.q });
  search.el.classList.add('grow');
  const list = h('div', {}, skeleton(4));
  const foot = h('div');
  replace(ctx.main, pageHeader('Users'),
    h('section', { 'aria-labelledby': 'accounts-title' }, h('h2', { id: 'accounts-title', class: 'sr-only', text: 'Accounts' }),
      h('div', { class: 'toolbar' }, search.el), slot.el, list, foot),
    createForm(() => load()));

  async function toggleAdmin(box, user) {
    const want = box.checked;
    box.disabled = true;
    try {
      await api(`/users/${user.id}`, { method: 'PATCH', json: { admin_platform: want }, signal: ctx.signal });
      user.admin_platform = want;
      slot.ok(`${user.mail} is ${want ? 'now an administrator' : 'no longer an administrator'}.`);
    } catch (e) {
      box.checked = !want;
      if (e.name !== 'AbortError') slot.show(e, { title: `${user.mail} was not changed` });
    } finally {
      box.disabled = false;
    }
  }

  async function remove(btn, user) {
    await confirmAndRun(btn, `Delete the account ${user.mail}? Its tokens are revoked at once.`,
      { confirm: 'Delete user', failed: `${user.mail} was not deleted`, slot }, async () => {
        await api(`/users/${user.id}`, { method: 'DELETE', signal: ctx.signal });
        slot.ok(`User ${user.mail} deleted.`);
        await load();
      });
  }

  async function load() {
    ctx.setQuery({ q: state.q, skip: state.skip || '' });
    try {
      const page = await api('/users', { query: { q: state.q, limit: LIMIT, skip: state.skip, sort: 'mail' }, signal: ctx.signal });
      replace(list, dataTable([
        { label: 'Name', cell: (u) => u.name },
        { label: 'Mail', cell: (u) => u.mail },
        {
          label: 'Admin', cell: (u) => {
            const id = `admin-${u.id}`;
            const box = h('input', { type: 'checkbox', id, checked: u.admin_platform, disabled: u.id === ctx.me?.id, on: { change: (e) => toggleAdmin(e.currentTarget, u) } });
            return h('span', { class: 'field-check' }, box, h('label', { for: id, text: 'Admin' }, h('span', { class: 'sr-only', text: ` (${u.mail})` })));
          },
        },
        { label: 'Created', class: 'nowrap', cell: (u) => format.dateTime(u.created_at) },
        { label: 'Actions', cell: (u) => (u.id === ctx.me?.id ? h('span', { class: 'muted', text: 'you' }) : button('Delete', (e) => remove(e.currentTarget, u), { kind: 'danger', small: true, label: `Delete ${u.mail}` })) },
      ], page.items, { empty: state.q ? 'No user matches.' : 'No user yet.', caption: 'Users' }));
      replace(foot, page.total > LIMIT ? pager({ total: page.total, limit: LIMIT, skip: state.skip, go: (skip) => { state.skip = skip; load(); } }) : null);
    } catch (e) {
      if (e.name !== 'AbortError') replace(list, errorBox(e, { title: 'The users could not load' }));
    }
  }

  let timer = null;
  search.input.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(() => { state.q = search.input.value.trim(); state.skip = 0; load(); }, 250);
  });
  await load();
}
