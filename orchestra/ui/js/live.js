// The live event stream (GET /api/v1/events): one per tab, read with fetch so that it
// carries the bearer token (EventSource cannot send headers). Pages do not read events
// themselves: `router.every` refreshes a page when an event concerns it, and falls back to
// polling while the stream is down. A `reset` (events may have been missed) refreshes too.
// On a drop it reconnects with Last-Event-ID after 1, 2, 4... up to 30 s.

import { BASE, token } from './api.js';

const listeners = new Set();
let state = 'off'; // off | connecting | live | down
let controller = null;
let lastId = null;
let retry = null;
let delay = 1000;

function setState(next) {
  if (state === next) return;
  state = next;
  document.documentElement.dataset.live = next;
  for (const l of listeners) l.onState?.(next);
}

/** Whether events arrive now (else pages poll). */
export function connected() {
  return state === 'live';
}

export function current() {
  return state;
}

/** Listen: `{onEvent(event), onReset(reason), onState(state)}`; returns the unsubscribe. */
export function subscribe(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

function dispatch(name, data, id) {
  if (id) lastId = id;
  let body = null;
  try {
    body = JSON.parse(data);
  } catch {
    return;
  }
  for (const l of listeners) {
    if (name === 'reset') l.onReset?.(body?.reason || 'reset');
    else l.onEvent?.(body);
  }
}

/** Parse the stream's lines into events, as the SSE spec does. */
async function read(response, signal) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  let name = '';
  let data = [];
  let id = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done || signal.aborted) return;
    buffer += decoder.decode(value, { stream: true });
    let nl = buffer.search(/\r?\n/);
    while (nl >= 0) {
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(buffer[nl] === '\r' ? nl + 2 : nl + 1);
      if (line === '') {
        if (data.length) dispatch(name || 'message', data.join('\n'), id);
        name = '';
        data = [];
        id = null;
      } else if (!line.startsWith(':')) {
        const at = line.indexOf(':');
        const field = at < 0 ? line : line.slice(0, at);
        const text = at < 0 ? '' : line.slice(at + 1).replace(/^ /, '');
        if (field === 'event') name = text;
        else if (field === 'data') data.push(text);
        else if (field === 'id') id = text;
      }
      nl = buffer.search(/\r?\n/);
    }
  }
}

async function connect() {
  clearTimeout(retry);
  const bearer = token();
  if (!bearer) {
    setState('off');
    return;
  }
  controller?.abort();
  controller = new AbortController();
  const { signal } = controller;
  setState('connecting');
  const headers = { Accept: 'text/event-stream', Authorization: `Bearer ${bearer}` };
  if (lastId) headers['Last-Event-ID'] = lastId;
  try {
    const response = await fetch(`${BASE}/events`, { headers, signal, cache: 'no-store' });
    if (!response.ok) throw new Error(`${response.status}`);
    setState('live');
    delay = 1000;
    await read(response, signal);
  } catch (e) {
    if (signal.aborted) return;
    console.warn('event stream dropped', e);
  }
  if (signal.aborted) return;
  setState('down');
  retry = setTimeout(connect, delay);
  delay = Math.min(delay * 2, 30000);
}

/** Open the stream (after signing in). */
export function start() {
  if (state === 'off' || state === 'down') connect();
}

/** Close it (signing out). */
export function stop() {
  clearTimeout(retry);
  controller?.abort();
  controller = null;
  lastId = null;
  setState('off');
}
