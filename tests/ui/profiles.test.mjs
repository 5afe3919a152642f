// Profiles in the browser: built-ins marked; an encoder string the API refuses shows the
// API's own message under that field; create, edit and delete a profile; the encoders help;
// built-ins read-only for users and editable for admins.

import assert from 'node:assert/strict';
import { before, test } from 'node:test';

import { api, assertClean, axeScan, createUser, newPage, screenshot, signIn, unique } from './lib/harness.mjs';

let user;

before(async () => {
  user = await createUser({ first_name: 'Pat', last_name: 'Profiles' });
});

async function go(page, hash, heading) {
  await page.evaluate((h) => { window.location.hash = h; }, hash);
  if (heading) await page.getByRole('heading', { level: 1, name: heading }).waitFor();
}

/** The error element of the field whose control is `control` (its own .field). */
function errorOf(control) {
  return control.locator('xpath=ancestor::div[contains(@class, "field")][1]').locator('.field-error');
}

test('profiles: built-ins marked; a refused encoder string shows the API\'s message at the field; create, edit, delete', async () => {
  const page = await newPage();
  await signIn(page, user.mail, user.secret);
  await go(page, '#/profiles', 'Profiles');
  const builtIn = page.locator('tbody tr', { has: page.getByRole('link', { name: 'Force 720p', exact: true }) });
  await builtIn.waitFor();
  assert.equal(await builtIn.locator('.badge').textContent(), 'built-in');
  assert.equal(await builtIn.getByRole('button', { name: /Delete/ }).count(), 0, 'a user cannot delete a built-in');
  assert.equal(await builtIn.getByRole('link', { name: /^Edit/ }).count(), 0, 'nor edit it');
  await screenshot(page, 'profiles');
  await axeScan(page);

  // What the API says of `-i /etc/passwd`, asked directly.
  const title = unique('UI profile');
  const bad = '-i /etc/passwd';
  const refused = await api('POST', '/transform/profiles', { auth: user, expect: 422, body: { title, encoder_name: 'ffmpeg', encoder_string: bad } });
  const message = refused.body.error.message;
  assert.ok(message.length > 0);

  await page.getByRole('link', { name: 'New profile' }).click();
  await page.getByRole('heading', { level: 1, name: 'New profile' }).waitFor();
  await page.getByLabel('Title', { exact: true }).fill(title);
  await page.getByLabel('Description').fill('made in the browser');
  const encoderString = page.getByLabel('Encoder string', { exact: true });
  await encoderString.fill(bad);
  await page.getByRole('button', { name: 'Create profile' }).click();
  const error = errorOf(encoderString);
  await error.waitFor({ state: 'visible' });
  assert.equal(await error.textContent(), message, 'the API\'s message, under the encoder string field');
  assert.equal(await encoderString.getAttribute('aria-invalid'), 'true');
  assert.ok((await encoderString.getAttribute('aria-describedby')).split(' ').includes(await error.getAttribute('id')), 'the message describes the field');
  assert.equal(await errorOf(page.getByLabel('Title', { exact: true })).isHidden(), true, 'and no other field');
  assert.equal(await page.locator('.message-slot .alert').count(), 0, 'not as a general error');
  assert.equal(await page.evaluate(() => document.activeElement?.name), 'encoder_string', 'the focus goes to the field');
  // The help: what an encoder string may hold, from GET /transform/encoders.
  const help = page.locator('section', { has: page.getByRole('heading', { name: 'What an encoder string may hold' }) });
  await help.getByLabel('Filter the lists').fill('scale');
  assert.ok(await help.locator('code', { hasText: /^scale$/ }).first().isVisible(), 'the scale filter is listed');
  await help.getByLabel('Filter the lists').fill('');
  await screenshot(page, 'profile-refused');
  await axeScan(page);

  // A good string: created, and the page becomes the profile's.
  const good = '-vf scale=-2:240 -c:v libx264 -crf 28 -c:a aac -f mp4';
  await encoderString.fill(good);
  await page.getByRole('button', { name: 'Create profile' }).click();
  await page.waitForURL(/#\/profiles\/[0-9a-f-]{36}$/);
  const id = page.url().split('/').pop();
  const made = (await api('GET', `/transform/profiles/${id}`, { auth: user, expect: 200 })).body;
  assert.deepEqual([made.title, made.encoder_string, made.description, made.builtin], [title, good, 'made in the browser', false]);
  await page.getByRole('heading', { level: 1, name: title }).waitFor();

  // Edit it: a refused change shows there too, then a good one is saved.
  const edited = page.getByLabel('Encoder string', { exact: true });
  await edited.fill('-vf scale=-2:240 -f mp4 -y');
  await page.getByRole('button', { name: 'Save changes' }).click();
  await errorOf(edited).waitFor({ state: 'visible' });
  const direct = await api('PATCH', `/transform/profiles/${id}`, { auth: user, expect: 422, body: { encoder_string: '-vf scale=-2:240 -f mp4 -y' } });
  assert.equal(await errorOf(edited).textContent(), direct.body.error.message);
  await edited.fill('-vf scale=-2:360 -c:v libx264 -crf 26 -c:a aac -f mp4');
  await page.getByLabel('Title', { exact: true }).fill(`${title} v2`);
  await page.getByRole('button', { name: 'Save changes' }).click();
  await page.locator('.message-slot .alert.ok', { hasText: 'Saved.' }).waitFor();
  assert.ok(await errorOf(edited).isHidden(), 'the old error is gone');
  const after = (await api('GET', `/transform/profiles/${id}`, { auth: user, expect: 200 })).body;
  assert.equal(after.title, `${title} v2`);
  assert.equal(after.encoder_string, '-vf scale=-2:360 -c:v libx264 -crf 26 -c:a aac -f mp4');
  await page.getByRole('heading', { level: 1, name: `${title} v2` }).waitFor();
  await screenshot(page, 'profile-edit');
  await axeScan(page);

  // In the list: the user's own, not marked built-in, with edit and delete; delete asks first.
  await go(page, `#/profiles?q=${encodeURIComponent(title)}`, 'Profiles');
  const row = page.locator('tbody tr', { has: page.getByRole('link', { name: `${title} v2`, exact: true }) });
  await row.waitFor();
  assert.equal(await row.locator('.badge').count(), 0, 'a user\'s profile is not built-in');
  assert.equal(await row.locator('td[data-label="Owner"]').textContent(), 'you');
  await row.getByRole('button', { name: `Delete ${title} v2` }).click();
  const dialog = page.getByRole('dialog', { name: 'Delete the profile?' });
  await dialog.getByRole('button', { name: 'Cancel' }).click();
  await api('GET', `/transform/profiles/${id}`, { auth: user, expect: 200 });
  await row.getByRole('button', { name: `Delete ${title} v2` }).click();
  await dialog.getByRole('button', { name: 'Delete profile' }).click();
  await page.locator('.message-slot .alert.ok', { hasText: 'deleted' }).waitFor();
  await row.waitFor({ state: 'detached' });
  await api('GET', `/transform/profiles/${id}`, { auth: user, expect: 404 });
  // The browser logs each refused request; those are the ones this test made.
  assertClean(page, { allow: [/status of 422 .*\/api\/v1\/transform\/profiles/] });
  await page.context().close();
});

test('a built-in is read-only for a user, and editable by an admin', async () => {
  const builtIn = (await api('GET', '/transform/profiles?q=Negate', { auth: user, expect: 200 })).body.items.find((p) => p.title === 'Negate');
  const page = await newPage();
  await signIn(page, user.mail, user.secret);
  await go(page, `#/profiles/${builtIn.id}`, 'Negate');
  assert.equal(await page.locator('.page-header .badge').textContent(), 'built-in');
  assert.ok(await page.getByLabel('Encoder string', { exact: true }).isDisabled(), 'a user cannot change a built-in');
  assert.equal(await page.getByRole('button', { name: 'Save changes' }).count(), 0);
  await page.getByText('Built-in profiles are changed by admins only.').waitFor();
  await screenshot(page, 'profile-builtin');
  await axeScan(page);
  assertClean(page);
  await page.context().close();

  const admin = await createUser({ admin: true, first_name: 'Ada', last_name: 'Admin' });
  const adminPage = await newPage();
  await signIn(adminPage, admin.mail, admin.secret);
  await go(adminPage, '#/profiles?q=Negate', 'Profiles');
  const row = adminPage.locator('tbody tr', { has: adminPage.getByRole('link', { name: 'Negate', exact: true }) });
  await row.getByRole('link', { name: 'Edit Negate' }).click();
  await adminPage.getByRole('heading', { level: 1, name: 'Negate' }).waitFor();
  assert.ok(await adminPage.getByLabel('Encoder string', { exact: true }).isEnabled(), 'an admin may change a built-in');
  // A refused change to a built-in still shows the API's message at the field.
  const field = adminPage.getByLabel('Encoder string', { exact: true });
  await field.fill('-vf negate -f mp4 /tmp/out.mp4');
  await adminPage.getByRole('button', { name: 'Save changes' }).click();
  await errorOf(field).waitFor({ state: 'visible' });
  assert.equal((await api('GET', `/transform/profiles/${builtIn.id}`, { auth: user, expect: 200 })).body.encoder_string, builtIn.encoder_string, 'unchanged');
  assertClean(adminPage, { allow: [/status of 422 .*\/api\/v1\/transform\/profiles\//] });
  await adminPage.context().close();
});
