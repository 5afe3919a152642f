// Launch a transform: a READY media, a profile, the output's name and title, queue and
// priority. The API's refusal shows next to the field it names.

import { all, api, ApiError } from '../api.js';
import { h, replace } from '../dom.js';
import * as format from '../format.js';
import { busy, button, field, link, messageSlot, pageHeader, showFormError, spinner } from '../ui.js';

const PICK_LIMIT = 50;

/**
 * A READY-media picker: a search box and a select of the matching READY medias (paged through
 * the API, never all of them). `selected` is the id to start with (kept in the list even
 * when the search does not match it). Answers {el, select (the field), value(), media(),
 * onChange(fn), ready (a promise)}.
 */
export function mediaPicker({ signal, selected = '', label = 'Media' }) {
  const search = field({ label: 'Find a media', name: 'media_search', type: 'search', attrs: { placeholder: 'title contains…', autocomplete: 'off' } });
  const select = field({ label, name: 'media_in_id', type: 'select', required: true, options: [] });
  const count = h('p', { class: 'hint', 'aria-live': 'polite' });
  const slot = messageSlot();
  const known = new Map();
  const listeners = [];
  let pinned = null;
  let seq = 0;

  function optionLabel(m) {
    const bits = [format.duration(m.duration), format.resolution(m)].filter((b) => b !== '—');
    return `${format.title(m)} — ${m.filename}${bits.length ? ` (${bits.join(', ')})` : ''}`;
  }

  async function load(q) {
    const mine = ++seq;
    const page = await api('/medias', { signal, query: { status: 'READY', q, limit: PICK_LIMIT, sort: '-created_at' } });
    if (mine !== seq) return;
    const keep = select.input.value || pinned?.id || '';
    const items = page.items.slice();
    const current = known.get(keep) ?? (pinned?.id === keep ? pinned : null);
    if (current && !items.some((m) => m.id === current.id)) items.unshift(current);
    for (const m of items) known.set(m.id, m);
    replace(select.input,
      h('option', { value: '', text: items.length ? 'Choose a media…' : 'No READY media matches' }),
      items.map((m) => h('option', { value: m.id, text: optionLabel(m), selected: m.id === keep })));
    count.textContent = page.total > page.items.length
      ? `${page.items.length} of ${page.total} READY medias shown; search to find others.`
      : `${page.total} READY media${page.total === 1 ? '' : 's'}${q ? ' match' : ''}.`;
    if (select.input.value !== keep) listeners.forEach((fn) => fn());
  }

  async function start() {
    if (selected) {
      try {
        const m = await api(`/medias/${encodeURIComponent(selected)}`, { signal });
        if (m.status === 'READY') pinned = m;
        else select.setError(`${format.title(m)} is ${m.status}: only READY medias can be used.`);
      } catch (e) {
        if (e.name === 'AbortError') throw e;
        select.setError(`The media in the address could not be read: ${e.message}`);
      }
    }
    await load('');
  }

  let typing = null;
  search.input.addEventListener('input', () => {
    clearTimeout(typing);
    typing = setTimeout(() => load(search.input.value.trim()).catch((e) => {
      if (e.name !== 'AbortError') slot.show(e, { title: 'The medias could not load' });
    }), 250);
  });
  select.input.addEventListener('change', () => {
    select.setError(null);
    listeners.forEach((fn) => fn());
  });
  const ready = start().catch((e) => {
    if (e.name !== 'AbortError') slot.show(e, { title: 'The medias could not load' });
  });

  return {
    el: h('div', { class: 'media-picker' }, search.el, select.el, count, slot.el),
    select,
    ready,
    value: () => select.input.value,
    media: () => known.get(select.input.value) ?? null,
    onChange: (fn) => listeners.push(fn),
  };
}

/** The extension a profile's output wants: from its `-f`, else the input's own. */
export function extensionFor(profile, input) {
  const inputExt = (input?.filename.match(/\.([A-Za-z0-9]+)$/) || [])[1] || 'mp4';
  if (!profile || profile.encoder_name === 'copy') return inputExt;
  const f = (profile.encoder_string.match(/(?:^|\s)-f\s+'?([A-Za-z0-9_]+)/) || [])[1];
  const byFormat = {
    mp4: 'mp4', mov: 'mov', ipod: 'm4a', ismv: 'mp4', '3gp': '3gp', '3g2': '3g2', matroska: 'mkv', webm: 'webm',
    mpegts: 'ts', mpeg: 'mpg', hls: 'm3u8', dash: 'mpd', mp3: 'mp3', mp2: 'mp2', adts: 'aac', ac3: 'ac3',
    eac3: 'eac3', wav: 'wav', w64: 'w64', aiff: 'aiff', caf: 'caf', flac: 'flac', ogg: 'ogg', oga: 'oga',
    ogv: 'ogv', opus: 'opus', avi: 'avi', flv: 'flv', mxf: 'mxf', nut: 'nut', ivf: 'ivf', gif: 'gif',
    h264: 'h264', hevc: 'hevc', m4v: 'm4v', srt: 'srt', webvtt: 'vtt', ass: 'ass',
  };
  return byFormat[f?.toLowerCase()] || inputExt;
}

/** A file name the API accepts: letters, digits, spaces, `.`, `_`, `-`, starting with a letter or digit. */
function safeStem(text) {
  const stem = text.replace(/\.[A-Za-z0-9]+$/, '').replace(/[^A-Za-z0-9 ._-]+/g, '-').replace(/^[^A-Za-z0-9]+/, '').replace(/-+/g, '-').trim();
  return (stem || 'output').slice(0, 200);
}

export async function render(ctx) {
  const slot = messageSlot();
  const body = h('div', {}, spinner('Loading the profiles and queues…'));
  replace(ctx.main, pageHeader('Launch a transform', link('/tasks', 'All tasks', { class: 'btn' })), body);

  let profiles;
  let queues = [];
  try {
    [profiles, queues] = await Promise.all([
      all('/transform/profiles', {}, ctx.signal),
      api('/transform/queues', { signal: ctx.signal }).then((p) => p.items).catch((e) => {
        if (e.name === 'AbortError') throw e;
        slot.show(e, { title: 'The queues could not load (type one below)' });
        return [];
      }),
    ]);
  } catch (e) {
    if (e.name === 'AbortError') return;
    replace(body, slot.el);
    slot.show(e, { title: 'The profiles could not load' });
    return;
  }

  const picker = mediaPicker({ signal: ctx.signal, selected: ctx.query.get('media') ?? '' });
  const profileHint = h('span');
  const profile = field({
    label: 'Profile', name: 'profile_id', type: 'select', required: true, value: ctx.query.get('profile') ?? '',
    hint: profileHint,
    options: [{ value: '', label: 'Choose a profile…' },
      ...profiles.map((p) => ({ value: p.id, label: `${p.title}${p.builtin ? ' (built-in)' : ''}` }))],
  });
  const filename = field({ label: 'Output file name', name: 'filename', required: true, hint: 'Its extension picks the container: .m3u8 makes an HLS package, .mpd a DASH one.', attrs: { autocomplete: 'off', spellcheck: 'false', maxlength: 255 } });
  const title = field({ label: 'Output title', name: 'title', required: true, attrs: { autocomplete: 'off', maxlength: 200 } });
  const queueNames = queues.map((q) => q.name);
  if (!queueNames.includes('transform')) queueNames.unshift('transform');
  const queue = field({
    label: 'Queue', name: 'queue', type: 'select', value: 'transform',
    options: [...queueNames.map((name) => {
      const q = queues.find((x) => x.name === name);
      return { value: name, label: q ? `${name} (${q.pending} waiting, ${q.units.length} unit${q.units.length === 1 ? '' : 's'})` : name };
    }), { value: '*other', label: 'Another queue…' }],
  });
  const otherQueue = field({ label: 'Queue name', name: 'queue', hint: '1 to 64 of letters, digits, ".", "_" and "-"; a queue no unit consumes waits until one does.', attrs: { autocomplete: 'off', spellcheck: 'false', maxlength: 64 } });
  otherQueue.el.hidden = true;
  const priority = field({
    label: 'Priority', name: 'priority', type: 'select', value: '0',
    options: Array.from({ length: 10 }, (_, i) => ({ value: String(i), label: i === 0 ? '0 (default)' : i === 9 ? '9 (runs first)' : String(i) })),
  });
  const submit = button('Launch', null, { kind: 'primary', type: 'submit' });
  const form = h('form', { class: 'form task-form', novalidate: true, 'aria-label': 'Launch a transform' },
    slot.el, picker.el, profile.el,
    h('div', { class: 'form-row' }, filename.el, title.el),
    h('div', { class: 'form-row' }, queue.el, priority.el), otherQueue.el,
    h('div', { class: 'actions' }, submit));
  replace(body, form);

  // The name and title follow the picks until the operator types their own.
  let nameTouched = false;
  let titleTouched = false;
  filename.input.addEventListener('input', () => { nameTouched = true; });
  title.input.addEventListener('input', () => { titleTouched = true; });

  function chosenProfile() {
    return profiles.find((p) => p.id === profile.input.value) ?? null;
  }

  function suggest() {
    const m = picker.media();
    const p = chosenProfile();
    if (!nameTouched && m) {
      const suffix = p ? `-${safeStem(p.title).toLowerCase().replace(/[ .]+/g, '-')}` : '';
      filename.input.value = `${safeStem(m.filename)}${suffix}.${extensionFor(p, m)}`;
    }
    if (!titleTouched && m) title.input.value = p ? `${format.title(m)} (${p.title})` : format.title(m);
  }

  function describe() {
    const p = chosenProfile();
    if (!p) {
      replace(profileHint, 'Each profile is an encoder and its options.');
      return;
    }
    replace(profileHint, p.description ? `${p.description}. ` : '',
      p.encoder_name === 'copy' ? 'Copies the file as it is.' : ['ffmpeg ', h('code', { class: 'encoder-string', text: p.encoder_string || '(no options)' })]);
  }

  profile.input.addEventListener('change', () => { profile.setError(null); describe(); suggest(); });
  picker.onChange(suggest);
  queue.input.addEventListener('change', () => {
    otherQueue.el.hidden = queue.input.value !== '*other';
    if (!otherQueue.el.hidden) otherQueue.input.focus();
  });
  describe();
  await picker.ready;
  suggest();

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const queueField = queue.input.value === '*other' ? otherQueue : queue;
    const fields = { media_in_id: picker.select, profile_id: profile, filename, title, queue: queueField, priority };
    for (const f of Object.values(fields)) f.setError(null);
    slot.clear();
    // The obvious gaps are said here; everything else is the API's to judge.
    if (!picker.value()) { picker.select.setError('Choose the media to transform.'); picker.select.input.focus(); return; }
    if (!profile.input.value) { profile.setError('Choose a profile.'); profile.input.focus(); return; }
    const queueName = queueField === queue ? queue.input.value : otherQueue.input.value.trim();
    busy(submit, async () => {
      try {
        const task = await api('/transform/tasks', {
          method: 'POST', signal: ctx.signal,
          json: {
            media_in_id: picker.value(), profile_id: profile.input.value, filename: filename.input.value.trim(),
            metadata: { title: title.input.value.trim() }, queue: queueName || undefined, priority: Number(priority.input.value),
          },
        });
        ctx.navigate(`/tasks/${task.id}`);
      } catch (err) {
        if (err.name === 'AbortError') return;
        showFormError(fields, slot, fieldOf(err));
      }
    });
  });
}

/** The API names the field it refuses (`error.field`); the output's metadata is its title field. */
function fieldOf(err) {
  if (!err.field?.startsWith('metadata')) return err;
  return new ApiError(err.status, err.code, err.message, 'title');
}
