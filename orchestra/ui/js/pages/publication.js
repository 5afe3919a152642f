// One publication, live: its public URL as a link and in a player, and unpublish
// (REVOKING while the unit removes the files, then REVOKED and the URL answers 404).

import { api } from '../api.js';
import { h, replace, uid } from '../dom.js';
import * as format from '../format.js';
import { player } from '../player.js';
import { button, confirmAndRun, errorBox, link, liveFacts, messageSlot, pageHeader, spinner, statusBadge } from '../ui.js';
import { publicLink } from './publications.js';
import { mediaLink } from './tasks.js';

const REFRESH_MS = 1000;
/** Nothing more happens to these without someone asking. */
const SETTLED = ['SUCCESS', 'FAILURE', 'REVOKED'];

export async function render(ctx) {
  const id = ctx.params.id;
  replace(ctx.main, pageHeader('Publication'), spinner());
  let task;
  let media;
  try {
    task = await api(`/publisher/tasks/${encodeURIComponent(id)}`, { signal: ctx.signal });
    media = await api(`/medias/${task.media_id}`, { signal: ctx.signal }).catch((e) => {
      if (e.name === 'AbortError') throw e;
      return { id: task.media_id, unreadable: e.message, filename: '' };
    });
  } catch (e) {
    if (e.name === 'AbortError') return;
    replace(ctx.main, pageHeader('Publication'), errorBox(e, { title: 'The publication could not load' }), h('p', {}, link('/publications', 'Back to the publications')));
    return;
  }

  const actions = messageSlot();
  const refreshSlot = messageSlot();
  const unpublish = button('Unpublish', (e) => onUnpublish(e.currentTarget), { kind: 'danger', label: 'Unpublish this media' });
  const badge = h('span');
  const note = h('div');
  const facts = liveFacts(['Status', 'Public URL', 'Media', 'Queue', 'Unit', 'Attempt', 'Handed back', 'Created', 'Started', 'Finished', 'Publication id']);
  const errorTitle = uid('pub-error');
  const log = h('pre', { class: 'log', attrs: { tabindex: 0 }, 'aria-labelledby': errorTitle });
  const errorCard = h('section', { class: 'card', 'aria-labelledby': errorTitle, hidden: true }, h('h2', { id: errorTitle, text: 'Why it failed' }), log);
  const playTitle = uid('pub-play');
  const playBody = h('div');
  const playCard = h('section', { class: 'card', 'aria-labelledby': playTitle, hidden: true }, h('h2', { id: playTitle, text: 'Play the public URL' }), playBody);
  const factsTitle = uid('pub-facts');
  replace(ctx.main,
    pageHeader(`Publication: ${format.title(media) || task.id}`, unpublish),
    actions.el, refreshSlot.el, note,
    h('div', { class: 'split' },
      h('div', {}, playCard, errorCard),
      h('section', { class: 'card', 'aria-labelledby': factsTitle }, h('h2', { id: factsTitle, text: 'Details' }), facts.el)));

  let playing = null;
  let shown = '';

  function stopPlayer() {
    playing?.abort();
    playing = null;
  }
  ctx.signal.addEventListener('abort', stopPlayer, { once: true });

  function draw() {
    if (shown !== task.status) {
      replace(badge, statusBadge(task.status));
      let text = null;
      let kind = 'note';
      if (task.status === 'REVOKING') { text = 'REVOKING: the unit holding the files is removing them. The URL stops answering once it is done.'; kind = 'warn'; }
      if (task.status === 'REVOKED') text = 'Unpublished: the files are gone from the publisher and the URL answers 404.';
      if (['PENDING', 'RETRY', 'STARTED', 'PROGRESS'].includes(task.status)) text = `Publishing: a publisher unit is copying the files${task.attempt > 1 ? ` (attempt ${task.attempt})` : ''}.`;
      replace(note, text ? h('p', { class: ['alert', kind], role: 'status', text }) : null);
    }
    facts.set('Status', badge, task.status);
    facts.set('Public URL', task.publish_uri ? (task.status === 'SUCCESS' ? publicLink(task.publish_uri) : h('span', { class: 'muted', text: task.publish_uri })) : '—', `${task.status}|${task.publish_uri}`);
    facts.set('Media', mediaLink(task.media_id, media), task.media_id);
    facts.set('Queue', task.queue);
    facts.set('Unit', task.unit_id ? link('/units', task.unit_id, { class: 'mono' }) : '—', task.unit_id ?? '');
    facts.set('Attempt', String(task.attempt));
    facts.set('Handed back', String(task.handed_back ?? 0));
    facts.set('Created', format.dateTime(task.created_at));
    facts.set('Started', format.dateTime(task.started_at));
    facts.set('Finished', format.dateTime(task.finished_at));
    facts.set('Publication id', h('span', { class: 'mono', text: task.id }), task.id);
    unpublish.hidden = ['REVOKING', 'REVOKED', 'FAILURE'].includes(task.status);
    errorCard.hidden = task.status !== 'FAILURE';
    const text = task.status === 'FAILURE' ? (task.error || 'The unit gave no reason.') : '';
    if (log.textContent !== text) log.textContent = text;

    if (task.status === 'SUCCESS' && task.publish_uri && !playing) {
      playing = new AbortController();
      playCard.hidden = false;
      replace(playBody, player(task.publish_uri, { filename: media.filename || task.publish_uri, signal: playing.signal }),
        h('p', { class: 'muted' }, 'Served by the publisher unit to anyone with the link: ', publicLink(task.publish_uri)));
    } else if (task.status !== 'SUCCESS' && playing) {
      stopPlayer();
      playCard.hidden = true;
      playBody.replaceChildren();
    }
    shown = task.status;
  }

  async function onUnpublish(btn) {
    await confirmAndRun(btn, `Unpublish ${format.title(media) || 'this media'}? The publisher removes the files and ${task.publish_uri || 'the URL'} stops answering.`,
      { confirm: 'Unpublish', title: 'Unpublish the media?', failed: 'The media was not unpublished', slot: actions }, async () => {
        task = await api(`/publisher/tasks/${task.id}`, { method: 'DELETE', signal: ctx.signal });
        actions.ok(task.status === 'REVOKED' ? 'Unpublished.' : 'Unpublish asked: the unit is removing the files.');
        draw();
      });
  }

  draw();
  // Live while something is under way; a published one is checked less often (someone
  // else may unpublish it).
  let quiet = 0;
  ctx.every(REFRESH_MS, async ({ live }) => {
    if (task.status === 'REVOKED' || task.status === 'FAILURE') return;
    if (!live && SETTLED.includes(task.status) && (quiet = (quiet + 1) % 5) !== 0) return;
    try {
      task = await api(`/publisher/tasks/${task.id}`, { signal: ctx.signal });
      refreshSlot.clear();
      // The notice says how it ended; an earlier "unpublish asked" is stale now.
      if (task.status === 'REVOKED') actions.clear();
      draw();
    } catch (e) {
      if (e.name !== 'AbortError') refreshSlot.show(e, { title: 'The publication could not refresh' });
    }
  }, (e) => e.task_id === task.id);
}
