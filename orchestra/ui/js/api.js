// The one client of the orchestra's API (/api/v1). Every call goes through `api()` or
// `upload()`, which add the bearer token, turn error bodies into ApiError, and send a 401
// back to the sign-in form (session.js listens for it).

export const BASE = '/api/v1';
const TOKEN_KEY = 'oscied.token';

/** An error answer: `{"error": {"code", "message", "field"?}}`, or a network failure (status 0). */
export class ApiError extends Error {
  constructor(status, code, message, field = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

/** Fired on `events` when the token stops working: `detail` is the message to show. */
export const events = new EventTarget();

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** `/medias` + {q: 'x', skip: 0, status: null} → `/medias?q=x&skip=0` (empty values dropped). */
export function withQuery(path, query) {
  if (!query) return path;
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value === undefined || value === null || value === '') continue;
    params.set(key, String(value));
  }
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

/** HTTP Basic for `user:secret`, UTF-8 safe. */
export function basic(user, secret) {
  const bytes = new TextEncoder().encode(`${user}:${secret}`);
  let binary = '';
  for (const b of bytes) binary += String.fromCharCode(b);
  return `Basic ${btoa(binary)}`;
}

async function errorOf(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // Not JSON (a proxy's page): the status says enough.
  }
  const detail = body?.error;
  const message = detail?.message || `${response.status} ${response.statusText || 'error'}`;
  return new ApiError(response.status, detail?.code || 'http_error', message, detail?.field ?? null);
}

function expired(message) {
  setToken(null);
  events.dispatchEvent(new CustomEvent('unauthorized', { detail: message }));
}

/**
 * Call the API. `json` is sent as the JSON body; `authorization` replaces the bearer token
 * (sign-in and secret changes send Basic). Answers the parsed JSON, or null for 204.
 */
export async function api(path, { method = 'GET', json, query, signal, authorization, headers = {} } = {}) {
  const init = { method, signal, headers: { Accept: 'application/json', ...headers } };
  const bearer = token();
  if (authorization) init.headers.Authorization = authorization;
  else if (bearer) init.headers.Authorization = `Bearer ${bearer}`;
  if (json !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(json);
  }
  let response;
  try {
    response = await fetch(withQuery(`${BASE}${path}`, query), init);
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'network', `The orchestra did not answer (${e.message}). Is it running?`);
  }
  if (!response.ok) {
    const error = await errorOf(response);
    // A 401 on our own token means it expired or was revoked: back to the sign-in form.
    if (response.status === 401 && !authorization && bearer) expired(error.message);
    throw error;
  }
  if (response.status === 204) return null;
  const type = response.headers.get('Content-Type') || '';
  return type.includes('json') ? response.json() : response.text();
}

/**
 * Upload a multipart form with byte progress: `onProgress(loaded, total)`. Answers the
 * parsed JSON; `signal` cancels (the promise rejects with an AbortError).
 */
export function upload(path, form, { onProgress, signal } = {}) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', `${BASE}${path}`);
    xhr.setRequestHeader('Accept', 'application/json');
    const bearer = token();
    if (bearer) xhr.setRequestHeader('Authorization', `Bearer ${bearer}`);
    xhr.upload.addEventListener('progress', (e) => {
      if (e.lengthComputable && onProgress) onProgress(e.loaded, e.total);
    });
    xhr.addEventListener('load', () => {
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        // handled below
      }
      if (xhr.status >= 200 && xhr.status < 300) {
        resolve(body);
        return;
      }
      const detail = body?.error;
      const error = new ApiError(xhr.status, detail?.code || 'http_error',
        detail?.message || `${xhr.status} ${xhr.statusText || 'error'}`, detail?.field ?? null);
      if (xhr.status === 401 && bearer) expired(error.message);
      reject(error);
    });
    xhr.addEventListener('error', () => reject(new ApiError(0, 'network',
      'The upload was cut off: the orchestra closed the connection (too large, or not running).')));
    xhr.addEventListener('abort', () => reject(new DOMException('upload cancelled', 'AbortError')));
    if (signal) {
      if (signal.aborted) {
        reject(new DOMException('upload cancelled', 'AbortError'));
        return;
      }
      signal.addEventListener('abort', () => xhr.abort(), { once: true });
    }
    xhr.send(form);
  });
}

/** Every item of a list route, page after page (small lists only: profiles, queues). */
export async function all(path, query = {}, signal) {
  const items = [];
  for (let skip = 0; ; skip += 1000) {
    const page = await api(path, { query: { ...query, limit: 1000, skip }, signal });
    items.push(...page.items);
    if (items.length >= page.total || page.items.length === 0) return items;
  }
}
