// The shell and the operator pages in a real browser: signing in and out, a 401 sending the
// tab back to the sign-in form, deep links surviving a reload, the overview's numbers, the
// units page, the Users page (admins only) and one's own account.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import {
  ORCHESTRA, ROOT_SECRET, WORKDIR, api, assertClean, axeScan, clip, createUser, mintToken, newPage, screenshot,
  signIn, unique, uploadClip, waitFor,
} from './lib/harness.mjs';

async function storage(page) {
  return page.evaluate(() => ({
    session: JSON.stringify(sessionStorage),
    local: JSON.stringify(localStorage),
    token: sessionStorage.getItem('oscied.token'),
  }));
}

test('a wrong secret is refused in the form; the token lives in sessionStorage only', async () => {
  const user = await createUser();
  const page = await newPage();
  await page.goto(`${ORCHESTRA}/`);
  await screenshot(page, 'signin');
  await axeScan(page);
  await page.getByLabel('Mail').fill(user.mail);
  await page.getByLabel('Secret').fill('not-the-secret');
  await page.getByRole('button', { name: 'Sign in' }).click();
  const refusal = page.locator('.signin-form [role=alert]');
  await refusal.waitFor();
  assert.match(await refusal.textContent(), /401/);
  assert.equal(await page.getByRole('button', { name: 'Sign in' }).isVisible(), true);

  await signIn(page, user.mail, user.secret);
  await page.getByRole('heading', { level: 1, name: 'Overview' }).waitFor();
  const kept = await storage(page);
  assert.ok(kept.token, 'the token is in sessionStorage');
  assert.equal(kept.local, '{}', 'nothing in localStorage');
  assert.ok(!page.url().includes(kept.token), 'no token in the URL');
  assert.ok(!page.url().includes(user.secret), 'no secret in the URL');
  // The media cookie is HttpOnly: the page's script cannot read it.
  assert.equal(await page.evaluate(() => document.cookie), '');
  const cookies = await page.context().cookies();
  const media = cookies.find((c) => c.name === 'oscied_media');
  assert.ok(media, 'the media cookie is set');
  assert.equal(media.httpOnly, true);
  assert.equal(media.sameSite, 'Strict');
  assert.equal(media.path, '/api/v1/medias');
  assertClean(page, { allow: [/401/] });
});

test('deep links and reloads keep the page; sign-out forgets and revokes the token', async () => {
  const user = await createUser();
  const page = await newPage();
  await page.goto(`${ORCHESTRA}/#/units`);
  await signIn(page, user.mail, user.secret);
  await page.getByRole('heading', { level: 1, name: 'Units' }).waitFor();
  assert.ok(page.url().endsWith('#/units'), 'the deep link is where sign-in lands');
  await page.reload();
  await page.getByRole('heading', { level: 1, name: 'Units' }).waitFor();
  assert.equal(await page.getByRole('button', { name: 'Sign in' }).count(), 0, 'still signed in after reload');
  const { token } = await storage(page);

  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('button', { name: 'Sign in' }).waitFor();
  assert.match(await page.locator('.signin-form').textContent(), /signed out/);
  assert.equal((await storage(page)).token, null, 'the tab forgot the token');
  await api('GET', '/users/me', { auth: { token }, expect: 401 });
  assert.equal((await page.context().cookies()).some((c) => c.name === 'oscied_media'), false, 'the cookie is cleared');
  assertClean(page);
});

test('a 401 from any call returns to the sign-in form with the API message', async () => {
  const user = await createUser();
  const page = await newPage();
  await signIn(page, user.mail, user.secret);
  await page.getByRole('heading', { level: 1, name: 'Overview' }).waitFor();
  // Revoke every token of the account behind the page's back, then use the page.
  await api('DELETE', '/auth/tokens', { auth: user, expect: 204 });
  await page.getByRole('link', { name: 'Units' }).first().click();
  await page.getByRole('button', { name: 'Sign in' }).waitFor();
  const note = await page.locator('.signin-form').textContent();
  assert.match(note, /sign in again/i);
  assert.equal((await storage(page)).token, null);
  // Signing in again lands back on the page that was asked for.
  await signIn(page, user.mail, user.secret);
  await page.getByRole('heading', { level: 1, name: 'Units' }).waitFor();
  assertClean(page, { allow: [/401/] });
});

test('the overview counts what the API counts and links to the filtered lists', async () => {
  const user = await createUser();
  const file = await clip('overview', 1);
  await uploadClip(user, file, { title: unique('ready') });
  await uploadClip(user, file, { title: unique('ready') });
  const page = await newPage();
  await signIn(page, user.mail, user.secret);
  const ready = page.locator('a.stat', { hasText: 'ready' }).first();
  await waitFor(async () => (await ready.locator('.value').textContent()) === '2', { what: 'the READY count to show 2' });
  const overview = (await api('GET', '/overview', { auth: user, expect: 200 })).body;
  assert.equal(overview.medias.READY, 2);
  const online = page.locator('a.stat', { hasText: 'online' });
  assert.equal(await online.locator('.value').textContent(), String(overview.units.online));
  assert.ok(overview.units.online >= 2, 'the in-process transform and publisher units are online');
  await screenshot(page, 'overview');
  await axeScan(page);
  await ready.click();
  await page.waitForURL(/#\/medias\?status=READY$/);
  assertClean(page);
});

test('the units page shows the in-process units live, with their heartbeat age', async () => {
  const user = await createUser();
  const page = await newPage();
  await signIn(page, user.mail, user.secret);
  await page.goto(`${ORCHESTRA}/#/units`);
  const rows = page.locator('table.data tbody tr');
  await waitFor(async () => (await rows.count()) >= 2, { what: 'two unit rows' });
  const text = await page.locator('table.data').textContent();
  assert.match(text, /transform/);
  assert.match(text, /publisher/);
  assert.match(text, /online/);
  assert.match(text, /ffmpeg version|\d+\.\d+/);
  // Plain users may not forget units: no button.
  assert.equal(await page.getByRole('button', { name: /Forget unit/ }).count(), 0);
  // The age ticks in place without the table being rebuilt.
  const first = await rows.first().elementHandle();
  const age = rows.first().locator('time');
  const before = await age.textContent();
  await waitFor(async () => (await age.textContent()) !== before, { timeoutMs: 15_000, what: 'the heartbeat age to change' });
  assert.equal(await first.evaluate((el) => el.isConnected), true, 'the row was updated, not replaced');
  await screenshot(page, 'units');
  await axeScan(page);
  assertClean(page);
});

test('an admin forgets an offline unit from the units page', async () => {
  // A unit that beat once, every second, and then went quiet: offline after three beats.
  const secret = readFileSync(join(WORKDIR, 'oscied-data', 'node_secret'), 'utf8').trim();
  const id = unique('gone-unit');
  await api('PUT', `/node/units/${id}`, {
    headers: { Authorization: `Basic ${Buffer.from(`node:${secret}`).toString('base64')}` },
    body: { kind: 'transform', queues: ['transform'], hostname: 'lost-host', version: 'test', ffmpeg_version: null, concurrency: 2, running_tasks: [], heartbeat_secs: 1 },
    expect: 200,
  });
  const admin = await createUser({ admin: true });
  const page = await newPage();
  await signIn(page, admin.mail, admin.secret);
  await page.goto(`${ORCHESTRA}/#/units`);
  const row = page.locator('table.data tbody tr', { hasText: id });
  await row.waitFor();
  await waitFor(async () => (await row.textContent()).includes('offline'), { timeoutMs: 20_000, what: 'the unit to show offline' });
  // Online units cannot be forgotten: no button on their rows.
  const online = page.locator('table.data tbody tr', { hasText: 'standalone-transform' });
  assert.equal(await online.getByRole('button').count(), 0);
  await row.getByRole('button', { name: `Forget unit ${id}` }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Forget unit' }).click();
  await page.getByText(`Unit ${id} forgotten`).waitFor();
  await row.waitFor({ state: 'detached' });
  const units = (await api('GET', '/units', { auth: admin, expect: 200 })).body.items;
  assert.equal(units.some((u) => u.id === id), false, 'the API no longer lists it');
  assertClean(page);
});

test('an admin creates a user and deletes it; the API 409 is shown; plain users see no Users page', async () => {
  const admin = await createUser({ admin: true });
  const page = await newPage();
  await signIn(page, admin.mail, admin.secret);
  await page.getByRole('link', { name: 'Users' }).click();
  await page.getByRole('heading', { level: 1, name: 'Users' }).waitFor();

  const mail = `${unique('new')}@example.com`;
  const form = page.locator('form', { has: page.getByRole('button', { name: 'Create user' }) });
  await form.getByLabel('First name').fill('Grace');
  await form.getByLabel('Last name').fill('Hopper');
  await form.getByLabel('Mail').fill(mail);
  await form.getByLabel('Secret').fill('short');
  await form.getByRole('button', { name: 'Create user' }).click();
  // The API's own refusal, next to the secret field.
  const secretError = form.locator('.field', { has: page.getByLabel('Secret') }).locator('.field-error');
  await secretError.waitFor();
  const refusal = await api('POST', '/users', { auth: 'root', body: { first_name: 'G', last_name: 'H', mail: `${unique('x')}@example.com`, secret: 'short' } });
  assert.equal(refusal.status, 422);
  assert.equal(await secretError.textContent(), refusal.body.error.message);

  await form.getByLabel('Secret').fill('a-long-enough-secret');
  await form.getByRole('button', { name: 'Create user' }).click();
  const row = page.locator('table.data tbody tr', { hasText: mail });
  await row.waitFor();
  const created = (await api('GET', '/users', { auth: 'root', expect: 200 })).body.items.find((u) => u.mail === mail);
  assert.ok(created, 'the API has the new user');
  await screenshot(page, 'users');
  await axeScan(page);

  // Make them an admin, and back.
  await row.getByLabel(/Admin/).check();
  await waitFor(async () => (await api('GET', `/users/${created.id}`, { auth: 'root' })).body.admin_platform === true, { what: 'admin_platform true' });

  // A user who owns a media cannot be deleted: the API's 409 in the page.
  const owner = await createUser();
  await uploadClip(owner, await clip('owned', 1), { title: 'owned' });
  await page.getByLabel('Search mail or name').fill(owner.mail);
  const ownerRow = page.locator('table.data tbody tr', { hasText: owner.mail });
  await ownerRow.waitFor();
  await ownerRow.getByRole('button', { name: `Delete ${owner.mail}` }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Delete user' }).click();
  const alert = page.locator('[role=alert]', { hasText: 'owns 1 media' });
  await alert.waitFor();
  await page.getByLabel('Search mail or name').fill('');

  // Delete the new user through the confirmation dialog; Escape first cancels.
  await row.getByRole('button', { name: `Delete ${mail}` }).click();
  await page.keyboard.press('Escape');
  assert.equal(await page.getByRole('dialog').count(), 0);
  await api('GET', `/users/${created.id}`, { auth: 'root', expect: 200 });
  await row.getByRole('button', { name: `Delete ${mail}` }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Delete user' }).click();
  await row.waitFor({ state: 'detached' });
  await api('GET', `/users/${created.id}`, { auth: 'root', expect: 404 });
  assertClean(page, { allow: [/422|409/] });

  const plain = await createUser();
  const other = await newPage();
  await signIn(other, plain.mail, plain.secret);
  await other.getByRole('heading', { level: 1, name: 'Overview' }).waitFor();
  assert.equal(await other.getByRole('link', { name: 'Users' }).count(), 0, 'no Users link for a plain user');
  await other.goto(`${ORCHESTRA}/#/users`);
  await other.getByText('This page is for administrators.').waitFor();
  assertClean(other);
});

test('root signs in and sees the Users page', async () => {
  const page = await newPage();
  await signIn(page, 'root', ROOT_SECRET);
  await page.getByRole('link', { name: 'Users' }).click();
  await page.getByRole('heading', { level: 1, name: 'Users' }).waitFor();
  await page.goto(`${ORCHESTRA}/#/account`);
  await page.getByText('You are signed in as root').waitFor();
  assertClean(page);
});

test('a user changes their own secret with the current one, then signs out everywhere', async () => {
  const user = await createUser();
  const elsewhere = await mintToken(user);
  const page = await newPage();
  await signIn(page, user.mail, user.secret);
  await page.getByRole('link', { name: /Signed in as/ }).click();
  await page.getByRole('heading', { level: 1, name: 'Account' }).waitFor();
  await screenshot(page, 'account', { fullPage: true });
  await axeScan(page);

  await page.getByLabel('Current secret').fill('wrong-secret-here');
  await page.getByLabel('New secret', { exact: true }).fill('the-new-secret-1');
  await page.getByLabel('New secret again').fill('the-new-secret-1');
  await page.getByRole('button', { name: 'Change secret' }).click();
  const currentError = page.locator('.field', { has: page.getByLabel('Current secret') }).locator('.field-error');
  await currentError.waitFor();
  assert.match(await currentError.textContent(), /current secret is wrong/);

  await page.getByLabel('Current secret').fill(user.secret);
  await page.getByRole('button', { name: 'Change secret' }).click();
  await page.getByText('Secret changed.').waitFor();
  // The old secret and the other token are dead; the new secret works; the tab still works.
  await api('GET', '/users/me', { auth: user, expect: 401 });
  await api('GET', '/users/me', { auth: { token: elsewhere }, expect: 401 });
  await api('GET', '/users/me', { auth: { mail: user.mail, secret: 'the-new-secret-1' }, expect: 200 });
  await page.getByRole('link', { name: 'Medias' }).first().click();
  await page.getByRole('heading', { level: 1, name: 'Medias' }).waitFor();

  const another = await mintToken({ mail: user.mail, secret: 'the-new-secret-1' });
  await page.goto(`${ORCHESTRA}/#/account`);
  await page.getByRole('button', { name: 'Sign out everywhere' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Sign out everywhere' }).click();
  await page.getByRole('button', { name: 'Sign in' }).waitFor();
  await api('GET', '/users/me', { auth: { token: another }, expect: 401 });
  assertClean(page, { allow: [/401/] });
});

test('every control is reachable with the keyboard and the focus is visible', async () => {
  const user = await createUser();
  const page = await newPage();
  await page.goto(`${ORCHESTRA}/`);
  // Sign in with the keyboard only.
  await page.keyboard.type(user.mail);
  await page.keyboard.press('Tab');
  await page.keyboard.type(user.secret);
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { level: 1, name: 'Overview' }).waitFor();
  await page.waitForFunction(() => document.activeElement?.textContent === 'Overview', null, { timeout: 5000 });
  // From the top of the page, Tab walks the skip link, the brand and the nav; each focused
  // control shows an outline.
  await page.reload();
  await page.getByRole('heading', { level: 1, name: 'Overview' }).waitFor();
  const seen = [];
  for (let i = 0; i < 6; i += 1) {
    await page.keyboard.press('Tab');
    seen.push(await page.evaluate(() => {
      const el = document.activeElement;
      const style = getComputedStyle(el);
      return { text: el.textContent.trim(), outline: style.outlineStyle !== 'none' && style.outlineWidth !== '0px' };
    }));
  }
  assert.equal(seen[0].text, 'Skip to content', JSON.stringify(seen));
  assert.ok(seen.some((s) => s.text === 'Medias'), `Tab reaches the nav: ${JSON.stringify(seen)}`);
  assert.ok(seen.every((s) => s.outline), `every focused control has a visible outline: ${JSON.stringify(seen)}`);
  // The skip link takes the focus to the page's heading and leaves the route alone.
  await page.reload();
  await page.getByRole('heading', { level: 1, name: 'Overview' }).waitFor();
  await page.keyboard.press('Tab');
  await page.keyboard.press('Enter');
  assert.equal(await page.evaluate(() => document.activeElement.tagName), 'H1');
  assert.ok(page.url().endsWith('#/') || !page.url().includes('#main'), page.url());
  // Enter on a focused nav link follows it.
  await page.getByRole('link', { name: 'Units' }).focus();
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { level: 1, name: 'Units' }).waitFor();
  assertClean(page);
});
