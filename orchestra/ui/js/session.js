// Who is signed in. The bearer token lives in sessionStorage (api.js), the media cookie is
// HttpOnly (set by PUT /auth/cookie so <video> and <img> can read the caller's medias), and
// the account is kept beside the token so a reload keeps the page without a round trip.

import { api, basic, setToken, token } from './api.js';

const ME_KEY = 'oscied.me';

/** The signed-in account: a User, or `{root: true, name: 'root', admin_platform: true}`. */
export function me() {
  if (!token()) return null;
  try {
    return JSON.parse(sessionStorage.getItem(ME_KEY) || 'null');
  } catch {
    return null;
  }
}

export function isAdmin() {
  return Boolean(me()?.admin_platform);
}

/** Exchange mail (or `root`) and secret for a token, then learn who that is. */
export async function signIn(mail, secret) {
  const answer = await api('/auth/token', { method: 'POST', authorization: basic(mail, secret) });
  setToken(answer.token);
  try {
    await api('/auth/cookie', { method: 'PUT' });
    const account = mail === 'root'
      ? { root: true, id: null, name: 'root', mail: 'root', admin_platform: true }
      : await api('/users/me');
    sessionStorage.setItem(ME_KEY, JSON.stringify(account));
    return account;
  } catch (e) {
    setToken(null);
    throw e;
  }
}

/** Refresh the kept account (after a change of one's own names or mail). */
export function remember(account) {
  sessionStorage.setItem(ME_KEY, JSON.stringify(account));
}

/** Forget the token here and revoke it (and the cookie) at the orchestra; `everywhere`
 * revokes every token of the account. Local state goes even when the calls fail. */
export async function signOut({ everywhere = false } = {}) {
  const calls = [api('/auth/cookie', { method: 'DELETE' }).catch(() => null)];
  await Promise.all(calls);
  try {
    await api(everywhere ? '/auth/tokens' : '/auth/token', { method: 'DELETE' });
  } finally {
    forget();
  }
}

/** Drop local state only (the token is already dead). */
export function forget() {
  setToken(null);
  sessionStorage.removeItem(ME_KEY);
}
