// Hash routes (`#/medias/<id>?status=READY`): deep links and reloads keep the page with no
// server-side fallback. Each route loads a page module whose `render(ctx)` fills `ctx.main`.

import { h, replace } from './dom.js';
import * as live from './live.js';
import { errorBox, spinner } from './ui.js';

/** Split `#/medias/abc?x=1` into the path and its query. */
export function current() {
  const raw = location.hash.startsWith('#/') ? location.hash.slice(1) : '/';
  const [path, search = ''] = raw.split('?');
  return { path: path.replace(/\/+$/, '') || '/', query: new URLSearchParams(search) };
}

function match(pattern, path) {
  const want = pattern.split('/');
  const got = path.split('/');
  if (want.length !== got.length) return null;
  const params = {};
  for (let i = 0; i < want.length; i += 1) {
    if (want[i].startsWith(':')) params[want[i].slice(1)] = decodeURIComponent(got[i]);
    else if (want[i] !== got[i]) return null;
  }
  return params;
}

/** With the event stream up, a page still reloads this often (an event could be missed). */
const SAFETY_MS = 30000;
/** Events this close together make one reload. */
const COALESCE_MS = 300;

export function navigate(path) {
  location.hash = `#${path}`;
}

/**
 * Start routing. `routes`: [{path, load, admin?}]; `allowed(route)` hides admin pages;
 * `onRoute(path)` lets the shell mark the nav.
 */
export function start({ routes, main, allowed, onRoute, context, focus = false }) {
  let controller = null;

  // After a navigation (and after signing in) focus goes to the new page's heading, so a
  // keyboard or screen-reader user starts reading there; a plain load keeps the browser's.
  async function render(moveFocus = true) {
    const { path, query } = current();
    controller?.abort();
    controller = new AbortController();
    const { signal } = controller;
    onRoute(path);
    let found = null;
    let params = {};
    for (const r of routes) {
      const m = match(r.path, path);
      if (m) {
        found = r;
        params = m;
        break;
      }
    }
    replace(main, spinner());
    if (!found || !allowed(found)) {
      replace(main, h('h1', { text: 'Not found', tabindex: -1 }),
        h('p', { text: found ? 'This page is for administrators.' : `Nothing lives at ${path}.` }),
        h('p', {}, h('a', { href: '#/', text: 'Back to the overview' })));
      return;
    }
    const ctx = {
      ...context(),
      main,
      params,
      query,
      path,
      signal,
      navigate,
      /** Change the query shown in the address bar without rendering again (filters). */
      setQuery(values) {
        const q = new URLSearchParams();
        for (const [k, v] of Object.entries(values)) if (v !== undefined && v !== null && v !== '') q.set(k, v);
        const text = q.toString();
        history.replaceState(null, '', `#${path}${text ? `?${text}` : ''}`);
      },
      /**
       * Keep the page live with `fn` (it reloads what the page shows); calls never overlap.
       * While the event stream is up, `fn` runs when an event `wants(event)` says concerns
       * the page (several close together make one call), after a reset, and every
       * `SAFETY_MS`; while it is down, every `ms` (polling). `poll: true` polls every `ms`
       * anyway (what the page shows changes without events: heartbeat ages). Only while
       * the page is visible.
       */
      every(ms, fn, wants = () => true, { poll = false } = {}) {
        let running = false;
        let again = false;
        let timer = null;
        let soon = null;
        // `fn({ live: true })` when an event asked for it: a page that skips its quiet polls
        // (nothing running) reloads then.
        let byEvent = false;
        const tick = async (fromEvent = false) => {
          byEvent = byEvent || fromEvent === true;
          if (document.hidden || signal.aborted) return;
          if (running) {
            again = true;
            return;
          }
          running = true;
          const live = byEvent;
          byEvent = false;
          try {
            await fn({ live });
          } catch (e) {
            if (e.name !== 'AbortError') console.warn('refresh failed', e);
          } finally {
            running = false;
            if (again) {
              again = false;
              tick(byEvent);
            }
          }
        };
        const coalesce = () => {
          if (!soon) soon = setTimeout(() => { soon = null; tick(true); }, COALESCE_MS);
        };
        const pace = () => {
          clearInterval(timer);
          timer = setInterval(tick, live.connected() && !poll ? Math.max(ms, SAFETY_MS) : ms);
        };
        const off = live.subscribe({
          onEvent: (event) => { if (wants(event)) coalesce(); },
          onReset: coalesce,
          // Back from a drop: what happened meanwhile is fetched at once.
          onState: () => { pace(); if (live.connected()) coalesce(); },
        });
        pace();
        const onVisible = () => { if (!document.hidden) tick(true); };
        document.addEventListener('visibilitychange', onVisible);
        signal.addEventListener('abort', () => {
          clearInterval(timer);
          clearTimeout(soon);
          off();
          document.removeEventListener('visibilitychange', onVisible);
        }, { once: true });
      },
    };
    try {
      const page = await found.load();
      if (signal.aborted) return;
      await page.render(ctx);
      if (signal.aborted) return;
      const heading = main.querySelector('h1');
      document.title = heading ? `${heading.textContent} · OSCIED` : 'OSCIED';
      if (moveFocus && heading && !main.contains(document.activeElement)) heading.focus();
    } catch (e) {
      if (e.name === 'AbortError' || signal.aborted) return;
      replace(main, h('h1', { text: 'This page could not load', tabindex: -1 }), errorBox(e));
    }
  }

  window.addEventListener('hashchange', () => {
    // In-page anchors (the skip link's #main) are not routes.
    if (location.hash.startsWith('#/') || location.hash === '') render();
  });
  render(focus);
  return { render, stop: () => controller?.abort() };
}
