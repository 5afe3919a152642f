// The shell: sign-in when there is no session, else the top bar and the routed page.

import { events } from './api.js';
import { h, replace } from './dom.js';
import * as live from './live.js';
import * as router from './router.js';
import * as session from './session.js';
import { button, field, messageSlot, showFormError, busy, toast } from './ui.js';

const ROUTES = [
  { path: '/', load: () => import('./pages/overview.js') },
  { path: '/medias', load: () => import('./pages/medias.js') },
  { path: '/medias/:id', load: () => import('./pages/media.js') },
  { path: '/tasks', load: () => import('./pages/tasks.js') },
  { path: '/tasks/new', load: () => import('./pages/task-new.js') },
  { path: '/tasks/:id', load: () => import('./pages/task.js') },
  { path: '/publications', load: () => import('./pages/publications.js') },
  { path: '/publications/:id', load: () => import('./pages/publication.js') },
  { path: '/profiles', load: () => import('./pages/profiles.js') },
  { path: '/profiles/new', load: () => import('./pages/profile.js') },
  { path: '/profiles/:id', load: () => import('./pages/profile.js') },
  { path: '/units', load: () => import('./pages/units.js') },
  { path: '/users', load: () => import('./pages/users.js'), admin: true },
  { path: '/account', load: () => import('./pages/account.js') },
];

const NAV = [
  ['/', 'Overview'],
  ['/medias', 'Medias'],
  ['/tasks', 'Transforms'],
  ['/publications', 'Publications'],
  ['/profiles', 'Profiles'],
  ['/units', 'Units'],
  ['/users', 'Users', true],
];

const main = document.getElementById('main');
const topbar = document.getElementById('topbar');
const nav = document.getElementById('nav');
const whoami = document.getElementById('whoami');
let app = null;
let pendingMessage = null;

function drawNav() {
  const admin = session.isAdmin();
  replace(nav, h('ul', {}, NAV.filter(([, , adminOnly]) => admin || !adminOnly)
    .map(([path, label]) => h('li', {}, h('a', { href: `#${path}`, dataset: { path }, text: label })))));
  const account = session.me();
  replace(whoami, badge,
    h('a', { href: '#/account', class: 'account-link', dataset: { path: '/account' } },
      h('span', { class: 'sr-only', text: 'Signed in as ' }), account?.name || account?.mail || ''),
    button('Sign out', (e) => busy(e.currentTarget, () => signOut()), { kind: 'ghost' }));
}

const LIVE_LABELS = {
  live: ['Live', 'Changes show as they happen (event stream connected).'],
  connecting: ['Connecting', 'Opening the event stream; pages refresh by polling meanwhile.'],
  down: ['Polling', 'The event stream dropped: pages refresh every few seconds while it reconnects.'],
  off: ['Polling', 'Pages refresh every few seconds.'],
};

/** Whether pages follow the event stream or poll, in the top bar. */
function liveBadge() {
  const badge = h('span', { class: 'live-badge', role: 'status', id: 'live-state' });
  const show = (state) => {
    const [text, title] = LIVE_LABELS[state] || LIVE_LABELS.off;
    badge.textContent = text;
    badge.title = title;
    badge.dataset.state = state;
  };
  show(live.current());
  live.subscribe({ onState: show });
  return badge;
}

// One badge, listening once, put back in the bar at each redraw.
const badge = liveBadge();

function markNav(path) {
  for (const a of document.querySelectorAll('[data-path]')) {
    const p = a.dataset.path;
    const active = p === '/' ? path === '/' : path === p || path.startsWith(`${p}/`);
    if (active) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

async function signOut({ everywhere = false } = {}) {
  try {
    await session.signOut({ everywhere });
  } catch (e) {
    toast(`The orchestra did not confirm the sign-out (${e.message}); this tab forgot the token.`, 'error');
  }
  showSignIn(everywhere ? 'You are signed out everywhere: every token of this account is revoked.' : 'You are signed out.');
}

function showApp({ focus = false } = {}) {
  topbar.hidden = false;
  drawNav();
  live.start();
  app?.stop();
  app = router.start({
    routes: ROUTES,
    main,
    allowed: (r) => !r.admin || session.isAdmin(),
    onRoute: markNav,
    focus,
    context: () => ({ me: session.me(), isAdmin: session.isAdmin(), refreshAccount: drawNav, signOut }),
  });
}

function showSignIn(message) {
  app?.stop();
  app = null;
  live.stop();
  topbar.hidden = true;
  const slot = messageSlot();
  const mail = field({ label: 'Mail', name: 'mail', type: 'text', required: true, attrs: { autocomplete: 'username', autocapitalize: 'off', spellcheck: 'false' } });
  const secret = field({ label: 'Secret', name: 'secret', type: 'password', required: true, attrs: { autocomplete: 'current-password' } });
  const submit = button('Sign in', null, { kind: 'primary', type: 'submit' });
  const form = h('form', { class: 'signin-form', 'aria-labelledby': 'signin-title', novalidate: true },
    h('div', { class: 'signin-brand' }, h('img', { src: '/favicon.svg', alt: '', width: 40, height: 40 }), h('span', { text: 'OSCIED' })),
    h('h1', { id: 'signin-title', text: 'Sign in', tabindex: -1 }),
    h('p', { class: 'muted', text: 'Use your mail and secret, or root and the root secret.' }),
    slot.el, mail.el, secret.el, submit);
  if (message) slot.ok(message);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    mail.setError(null);
    secret.setError(null);
    const m = mail.input.value.trim();
    const s = secret.input.value;
    if (!m) { mail.setError('Enter your mail (or root).'); mail.input.focus(); return; }
    if (!s) { secret.setError('Enter your secret.'); secret.input.focus(); return; }
    busy(submit, async () => {
      try {
        await session.signIn(m, s);
        secret.input.value = '';
        showApp({ focus: true });
      } catch (err) {
        showFormError({ mail, secret }, slot, err);
        secret.input.focus();
      }
    });
  });
  replace(main, h('div', { class: 'signin' }, form));
  document.title = 'Sign in · OSCIED';
  (pendingMessage ? form.querySelector('h1') : mail.input).focus();
  pendingMessage = null;
}

events.addEventListener('unauthorized', (e) => {
  session.forget();
  pendingMessage = e.detail;
  showSignIn(`Please sign in again: ${e.detail}`);
});

// The skip link focuses the page without touching the hash (which holds the route).
document.querySelector('.skip-link')?.addEventListener('click', (e) => {
  e.preventDefault();
  (main.querySelector('h1') || main).focus();
});

if (session.me()) showApp();
else showSignIn();
