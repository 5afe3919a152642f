// One transform task, live until it ends: progress, status, attempts, ffmpeg's error in full
// on FAILURE, revoke, and the output played in the page once it succeeded.

import { api, BASE } from '../api.js';
import { h, replace, uid } from '../dom.js';
import * as format from '../format.js';
import { mediaUrl, player } from '../player.js';
import { button, confirmAndRun, errorBox, link, liveFacts, messageSlot, pageHeader, progressBar, spinner, statusBadge } from '../ui.js';
import { FINAL, mediaCache, mediaLink, percentOf } from './tasks.js';

const REFRESH_MS = 1000;

function secs(value, digits = 1) {
  return value === null || value === undefined ? '—' : `${Number(value).toFixed(digits)} s`;
}

/** The progress numbers as tiles (a dl of dt/dd pairs in divs); `set(label, text)`. */
function tiles(labels) {
  const values = new Map();
  const el = h('dl', { class: 'task-stats' }, labels.map((label) => {
    const dd = h('dd', { text: '—' });
    values.set(label, dd);
    return h('div', {}, h('dt', { text: label }), dd);
  }));
  return {
    el,
    show(label, visible) {
      const dd = values.get(label);
      if (dd) dd.parentElement.hidden = !visible;
    },
    set(label, value) {
      const dd = values.get(label);
      const text = String(value ?? '—');
      if (dd && dd.textContent !== text) dd.textContent = text;
    },
  };
}

export async function render(ctx) {
  const id = ctx.params.id;
  replace(ctx.main, pageHeader('Transform task'), spinner());
  let task;
  try {
    task = await api(`/transform/tasks/${encodeURIComponent(id)}`, { signal: ctx.signal });
  } catch (e) {
    if (e.name === 'AbortError') return;
    replace(ctx.main, pageHeader('Transform task'), errorBox(e, { title: 'The task could not load' }), h('p', {}, link('/tasks', 'Back to the tasks')));
    return;
  }
  const medias = mediaCache(ctx.signal);
  const [profile] = await Promise.all([
    api(`/transform/profiles/${task.profile_id}`, { signal: ctx.signal }).catch((e) => {
      if (e.name === 'AbortError') throw e;
      return { id: task.profile_id, title: `${task.profile_id.slice(0, 8)}…`, unreadable: e.message };
    }),
    medias.load([task.media_in_id, task.media_out_id]),
  ]);
  if (ctx.signal.aborted) return;

  const out = () => medias.get(task.media_out_id);
  const heading = `Transform: ${format.title(out()) || task.id}`;
  const actions = messageSlot();
  const refreshSlot = messageSlot();
  const revoke = button('Revoke', (e) => onRevoke(e.currentTarget), { kind: 'danger', label: 'Revoke this task' });

  // Progress card.
  const badge = h('span', { class: 'task-status' });
  const attemptText = h('span', { class: 'muted' });
  const bar = progressBar('Transform progress');
  const stats = tiles(['Percent', 'Frame', 'FPS', 'Speed', 'Output time', 'Elapsed', 'ETA']);
  const notice = h('div', { class: 'task-notice' });
  const progressTitle = uid('progress-title');
  const progressCard = h('section', { class: 'card', 'aria-labelledby': progressTitle },
    h('h2', { id: progressTitle, text: 'Progress' }),
    h('div', { class: 'task-headline' }, badge, attemptText), bar.el, stats.el, notice);

  // ffmpeg's error, in full.
  const logTitle = uid('log-title');
  const log = h('pre', { class: 'log', attrs: { tabindex: 0 }, 'aria-labelledby': logTitle });
  const logCard = h('section', { class: 'card', 'aria-labelledby': logTitle, hidden: true },
    h('h2', { id: logTitle, text: 'Why it failed (ffmpeg\'s error)' }), log);

  // Details.
  const detailsTitle = uid('details-title');
  const details = liveFacts(['Input', 'Output', 'Profile', 'Queue', 'Priority', 'Attempt', 'Handed back', 'Unit',
    'Created', 'Dispatched', 'Started', 'Finished', 'Lease expires', 'Task id']);
  const detailsCard = h('section', { class: 'card', 'aria-labelledby': detailsTitle },
    h('h2', { id: detailsTitle, text: 'Details' }), details.el);

  // The output, once there is one to play.
  const outputTitle = uid('output-title');
  const outputBody = h('div');
  const outputCard = h('section', { class: 'card', 'aria-labelledby': outputTitle, hidden: true },
    h('h2', { id: outputTitle, text: 'Output' }), outputBody);

  replace(ctx.main, pageHeader(heading, revoke), actions.el, refreshSlot.el,
    h('div', { class: 'split task-detail' }, h('div', {}, progressCard, logCard, outputCard), h('div', {}, detailsCard)));

  let shownStatus = '';
  let played = false;

  function draw() {
    const p = task.progress;
    if (shownStatus !== task.status) replace(badge, statusBadge(task.status));
    const reported = p && !FINAL.includes(task.status) ? ` · reported ${format.age(p.updated_at)}` : '';
    const attempt = `attempt ${task.attempt}${task.handed_back ? `, ${task.handed_back} handed back` : ''}${reported}`;
    if (attemptText.textContent !== attempt) attemptText.textContent = attempt;
    const percent = percentOf(task);
    bar.el.hidden = task.status === 'PENDING' || task.status === 'RETRY' || (FINAL.includes(task.status) && task.status !== 'SUCCESS' && !p);
    const stopped = ['FAILURE', 'REVOKED', 'REVOKING'].includes(task.status);
    bar.el.classList.toggle('stopped', stopped);
    bar.set(percent, percent === null ? (task.status === 'STARTED' ? 'starting' : '')
      : `${stopped && task.status !== 'REVOKING' ? 'stopped at ' : ''}${percent.toFixed(1)} %`);
    stats.set('Percent', p ? `${p.percent.toFixed(1)} %` : (task.status === 'SUCCESS' ? '100 %' : '—'));
    stats.set('Frame', p?.frame ?? '—');
    stats.set('FPS', p?.fps !== null && p?.fps !== undefined ? p.fps.toFixed(1) : '—');
    stats.set('Speed', p?.speed !== null && p?.speed !== undefined ? `${p.speed.toFixed(2)}×` : '—');
    stats.set('Output time', p?.out_time !== null && p?.out_time !== undefined ? format.duration(p.out_time) : '—');
    stats.set('Elapsed', p ? secs(p.elapsed) : '—');
    stats.set('ETA', format.eta(p?.eta));
    // Numbers only where there are some: none before the first report, no ETA once done.
    stats.el.hidden = !p;
    stats.show('ETA', !FINAL.includes(task.status));
    drawNotice();
    const failed = task.status === 'FAILURE';
    logCard.hidden = !failed;
    const text = failed ? (task.error || 'The unit gave no reason.') : '';
    if (log.textContent !== text) log.textContent = text;

    const inMedia = medias.get(task.media_in_id);
    const outMedia = out();
    details.set('Input', mediaLink(task.media_in_id, inMedia), format.title(inMedia));
    details.set('Output', [mediaLink(task.media_out_id, outMedia), outMedia?.status ? [' ', statusBadge(outMedia.status)] : null],
      `${format.title(outMedia)}|${outMedia?.status}`);
    details.set('Profile', [link(`/profiles/${profile.id}`, profile.title), profile.builtin ? [' ', h('span', { class: 'badge badge-plain', text: 'built-in' })] : null], profile.title);
    details.set('Queue', task.queue);
    details.set('Priority', String(task.priority));
    details.set('Attempt', String(task.attempt));
    details.set('Handed back', String(task.handed_back ?? 0));
    details.set('Unit', task.unit_id ? link('/units', task.unit_id, { class: 'mono' }) : '—', task.unit_id ?? '');
    for (const [label, at] of [['Created', task.created_at], ['Dispatched', task.dispatched_at], ['Started', task.started_at],
      ['Finished', task.finished_at], ['Lease expires', task.lease_expires_at]]) details.set(label, format.dateTime(at));
    details.show('Lease expires', Boolean(task.lease_expires_at));
    details.set('Task id', h('span', { class: 'mono', text: task.id }), task.id);
    revoke.hidden = FINAL.includes(task.status) || task.status === 'REVOKING';
    shownStatus = task.status;
  }

  function drawNotice() {
    let want = null;
    if (task.status === 'RETRY') {
      want = ['warn', `Queued again for attempt ${task.attempt}. Why: ${task.error || 'its unit stopped answering.'}`];
    } else if (task.status === 'REVOKING') {
      want = ['warn', 'Revoking: the unit is stopping ffmpeg and cleaning up; the task ends REVOKED.'];
    } else if (task.status === 'REVOKED') {
      want = ['muted', 'Revoked: ffmpeg was stopped (or never started) and the output media was deleted.'];
    } else if (!FINAL.includes(task.status) && task.attempt > 1 && task.error) {
      want = ['warn', `This is attempt ${task.attempt}. The previous one ended: ${task.error}`];
    } else if (task.status === 'PENDING') {
      want = ['muted', `Queued on ${task.queue}, waiting for a unit.`];
    }
    const key = want ? want.join('|') : '';
    if (notice.dataset.key === key) return;
    notice.dataset.key = key;
    replace(notice, want ? h('p', { class: ['alert', want[0] === 'warn' ? 'warn' : 'note'], role: 'status', text: want[1] }) : null);
  }

  async function drawOutput() {
    if (played || task.status !== 'SUCCESS') return;
    played = true;
    outputCard.hidden = false;
    replace(outputBody, spinner('Loading the output…'));
    let media;
    try {
      media = await api(`/medias/${task.media_out_id}`, { signal: ctx.signal });
    } catch (e) {
      if (e.name === 'AbortError') return;
      replace(outputBody, errorBox(e, { title: 'The output media could not load' }));
      return;
    }
    if (media.status !== 'READY') {
      replace(outputBody, h('p', {}, 'The output media is ', statusBadge(media.status), ', so there is nothing to play.'));
      return;
    }
    replace(outputBody,
      player(mediaUrl(media), { filename: media.filename, signal: ctx.signal }),
      h('p', { class: 'actions output-links' },
        link(`/medias/${media.id}`, `Open ${format.title(media)}`),
        h('span', { class: 'muted', text: `${media.filename} · ${format.bytes(media.size)} · ${format.duration(media.duration)} · ${format.resolution(media)}` }),
        h('a', { href: `${BASE}/medias/${media.id}/download`, download: media.filename, text: 'Download' })));
  }

  async function onRevoke(btn) {
    await confirmAndRun(btn, `Revoke this transform of ${format.title(medias.get(task.media_in_id)) || 'the media'} with ${profile.title}? A running ffmpeg is stopped and the output media is deleted.`,
      { confirm: 'Revoke task', title: 'Revoke the task?', failed: 'The task was not revoked', slot: actions }, async () => {
        task = await api(`/transform/tasks/${task.id}`, { method: 'DELETE', signal: ctx.signal });
        actions.ok(task.status === 'REVOKED' ? 'Revoked.' : 'Revoke asked: the unit is stopping ffmpeg.');
        draw();
      });
  }

  draw();
  drawOutput();

  ctx.every(REFRESH_MS, async () => {
    if (FINAL.includes(task.status)) return;
    try {
      const next = await api(`/transform/tasks/${task.id}`, { signal: ctx.signal });
      refreshSlot.clear();
      const ended = FINAL.includes(next.status);
      task = next;
      if (ended) {
        // The notice says how it ended; an earlier "revoke asked" is stale now.
        actions.clear();
        await medias.reload(task.media_out_id);
      }
      draw();
      await drawOutput();
    } catch (e) {
      if (e.name !== 'AbortError') refreshSlot.show(e, { title: 'The task could not refresh' });
    }
  }, (e) => e.task_id === task.id);
}
