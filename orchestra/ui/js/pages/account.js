// Account: one's own names and mail, a new secret (asking for the current one: a token alone
// cannot change it), and signing out everywhere (every token of the account revoked).

import { api, basic } from '../api.js';
import { h, replace } from '../dom.js';
import * as format from '../format.js';
import * as session from '../session.js';
import { busy, button, confirmDialog, facts, field, messageSlot, pageHeader, showFormError } from '../ui.js';

function profileForm(ctx, user) {
  const slot = messageSlot();
  const fields = {
    first_name: field({ label: 'First name', name: 'first_name', value: user.first_name, required: true }),
    last_name: field({ label: 'Last name', name: 'last_name', value: user.last_name, required: true }),
    mail: field({ label: 'Mail', name: 'mail', type: 'email', value: user.mail, required: true, attrs: { autocomplete: 'username' } }),
  };
  const submit = button('Save', null, { kind: 'primary', type: 'submit' });
  const form = h('form', { class: 'form', novalidate: true }, slot.el,
    h('div', { class: 'form-row' }, fields.first_name.el, fields.last_name.el), fields.mail.el, h('div', { class: 'actions' }, submit));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    busy(submit, async () => {
      try {
        const changed = await api(`/users/${user.id}`, {
          method: 'PATCH',
          json: { first_name: fields.first_name.input.value, last_name: fields.last_name.input.value, mail: fields.mail.input.value },
          signal: ctx.signal,
        });
        for (const f of Object.values(fields)) f.setError(null);
        session.remember(changed);
        Object.assign(user, changed);
        ctx.refreshAccount();
        slot.ok('Saved.');
      } catch (err) {
        if (err.name !== 'AbortError') showFormError(fields, slot, err);
      }
    });
  });
  return h('section', { class: 'card', 'aria-labelledby': 'names-title' }, h('h2', { id: 'names-title', text: 'Name and mail' }), form);
}

function secretForm(ctx, user) {
  const slot = messageSlot();
  const fields = {
    current: field({ label: 'Current secret', name: 'current', type: 'password', required: true, attrs: { autocomplete: 'current-password' } }),
    secret: field({ label: 'New secret', name: 'secret', type: 'password', required: true, hint: '8 characters or more. Every token of this account is revoked; this tab signs in again with the new secret.', attrs: { autocomplete: 'new-password' } }),
    again: field({ label: 'New secret again', name: 'again', type: 'password', required: true, attrs: { autocomplete: 'new-password' } }),
  };
  const submit = button('Change secret', null, { kind: 'primary', type: 'submit' });
  const form = h('form', { class: 'form', novalidate: true }, slot.el,
    h('input', { type: 'text', name: 'username', value: user.mail, autocomplete: 'username', hidden: true, 'aria-hidden': 'true', tabIndex: -1 }),
    fields.current.el, h('div', { class: 'form-row' }, fields.secret.el, fields.again.el), h('div', { class: 'actions' }, submit));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    for (const f of Object.values(fields)) f.setError(null);
    slot.clear();
    const current = fields.current.input.value;
    const next = fields.secret.input.value;
    if (!current) { fields.current.setError('Enter your current secret.'); fields.current.input.focus(); return; }
    if (next !== fields.again.input.value) { fields.again.setError('The two new secrets differ.'); fields.again.input.focus(); return; }
    busy(submit, async () => {
      try {
        // HTTP Basic with the current secret: the API refuses a secret change made with a token.
        await api(`/users/${user.id}`, { method: 'PATCH', json: { secret: next }, authorization: basic(user.mail, current), signal: ctx.signal });
      } catch (err) {
        if (err.name === 'AbortError') return;
        if (err.status === 401) fields.current.setError(`The current secret is wrong: ${err.message}`);
        else showFormError(fields, slot, err);
        return;
      }
      // The change revoked this tab's token too: take a new one with the new secret.
      try {
        await session.signIn(user.mail, next);
        form.reset();
        slot.ok('Secret changed. Every other session of this account is signed out.');
      } catch (err) {
        slot.show(err, { title: 'Secret changed, but signing in again failed' });
      }
    });
  });
  return h('section', { class: 'card', 'aria-labelledby': 'secret-title' }, h('h2', { id: 'secret-title', text: 'Secret' }), form);
}

function sessions(ctx) {
  const signOutAll = button('Sign out everywhere', async () => {
    const ok = await confirmDialog('Revoke every token of this account, in every browser and script that uses one?', { confirm: 'Sign out everywhere' });
    if (ok) await busy(signOutAll, () => ctx.signOut({ everywhere: true }));
  }, { kind: 'danger' });
  return h('section', { class: 'card', 'aria-labelledby': 'sessions-title' }, h('h2', { id: 'sessions-title', text: 'Sessions' }),
    h('p', { class: 'muted', text: 'Signing out here revokes this tab\'s token. Signing out everywhere revokes every token of the account; HTTP Basic scripts are not affected.' }),
    signOutAll);
}

export async function render(ctx) {
  const account = ctx.me;
  if (account?.root) {
    replace(ctx.main, pageHeader('Account'),
      h('section', { class: 'card', 'aria-labelledby': 'root-title' }, h('h2', { id: 'root-title', text: 'root' }),
        h('p', { text: 'You are signed in as root, the operator\'s account. Its secret is set where the orchestra runs (OSCIED_ROOT_SECRET, rotated with OSCIED_ROTATE_ROOT_SECRET), not here.' })),
      sessions(ctx));
    return;
  }
  const user = await api('/users/me', { signal: ctx.signal });
  replace(ctx.main, pageHeader('Account'),
    h('section', { class: 'card', 'aria-labelledby': 'me-title' }, h('h2', { id: 'me-title', text: user.name || user.mail }),
      facts([['Mail', user.mail], ['Role', user.admin_platform ? 'administrator' : 'user'], ['Account id', h('span', { class: 'mono', text: user.id })], ['Created', format.dateTime(user.created_at)]])),
    h('div', { class: 'grid' }, profileForm(ctx, user), secretForm(ctx, user)),
    sessions(ctx));
}
