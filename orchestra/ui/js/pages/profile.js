// Create or edit a transform profile. The API validates the encoder string against its
// allow-list; its message shows under the encoder string field. GET /transform/encoders is
// the help beside the form: what an encoder string may hold.

import { api } from '../api.js';
import { h, replace, uid } from '../dom.js';
import { busy, button, confirmAndRun, dataTable, errorBox, field, link, messageSlot, pageHeader, showFormError, spinner } from '../ui.js';
import { builtinBadge, canChange } from './profiles.js';

function words(list) {
  return h('p', { class: 'word-list' }, list.map((w, i) => [i ? ' ' : null, h('code', { text: w })]));
}

/** The encoders and the ffmpeg allow-list, readable: options, filters, formats, codecs. */
function encodersHelp(encoders) {
  const id = uid('encoders');
  const filterBox = field({ label: 'Filter the lists', name: 'help_filter', type: 'search', attrs: { autocomplete: 'off', placeholder: 'e.g. scale, -b, x264' } });
  const content = h('div');
  function draw() {
    const q = filterBox.input.value.trim().toLowerCase();
    const has = (s) => !q || s.toLowerCase().includes(q);
    replace(content, encoders.map((enc) => {
      const a = enc.allowed;
      return h('div', { class: 'encoder-help' },
        h('h3', {}, h('code', { text: enc.name })), h('p', { text: enc.description }),
        a ? [
          h('details', { open: Boolean(q) }, h('summary', { text: `Output options (${a.options.filter((o) => has(o.name)).length})` }),
            dataTable([
              { label: 'Option', cell: (o) => h('code', { text: o.name }) },
              { label: 'Value', cell: (o) => o.value },
              { label: 'Per stream', cell: (o) => (o.specifier === 'none' ? '—' : o.specifier) },
            ], a.options.filter((o) => has(o.name)).map((o) => ({ ...o, id: o.name })), { empty: 'No option matches.', caption: 'Allowed output options' })),
          h('details', { open: Boolean(q) }, h('summary', { text: `Filters for -vf, -af, -filter_complex (${a.filters.filter((f) => has(f.name)).length})` }),
            dataTable([
              { label: 'Filter', cell: (f) => h('code', { text: f.name }) },
              { label: 'Options', cell: (f) => h('span', { class: 'mono small', text: f.options.join(', ') || '—' }) },
              { label: 'Timeline', cell: (f) => (f.timeline ? 'enable=' : '—') },
            ], a.filters.filter((f) => has(f.name)).map((f) => ({ ...f, id: f.name })), { empty: 'No filter matches.', caption: 'Allowed filters' })),
          [['Formats (-f)', a.formats], ['Codecs (-c, -c:v, -c:a)', a.codecs], ['Bitstream filters (-bsf)', a.bitstream_filters],
            ['-x264-params keys', a.x264_params], ['-x265-params keys', a.x265_params]]
            .map(([title, list]) => {
              const shown = list.filter(has);
              return h('details', { open: Boolean(q) && shown.length > 0 }, h('summary', { text: `${title} (${shown.length})` }),
                shown.length ? words(shown) : h('p', { class: 'muted', text: 'None matches.' }));
            }),
        ] : null);
    }));
  }
  filterBox.input.addEventListener('input', draw);
  draw();
  return h('section', { class: 'card encoders-help', 'aria-labelledby': id },
    h('h2', { id, text: 'What an encoder string may hold' }),
    h('p', { class: 'muted' }, 'The unit runs ', h('code', { text: 'ffmpeg -i <input> <encoder string> <output>' }),
      ': the string holds output options only, from these lists. Anything else is refused, with the reason under the field.'),
    filterBox.el, content);
}

export async function render(ctx) {
  const id = ctx.params.id;
  const creating = !id;
  const title = creating ? 'New profile' : 'Profile';
  replace(ctx.main, pageHeader(title), spinner());
  let profile = null;
  let encoders;
  try {
    [profile, encoders] = await Promise.all([
      creating ? null : api(`/transform/profiles/${encodeURIComponent(id)}`, { signal: ctx.signal }),
      api('/transform/encoders', { signal: ctx.signal }).then((p) => p.items),
    ]);
  } catch (e) {
    if (e.name === 'AbortError') return;
    replace(ctx.main, pageHeader(title), errorBox(e, { title: creating ? 'The encoders could not load' : 'The profile could not load' }),
      h('p', {}, link('/profiles', 'Back to the profiles')));
    return;
  }

  const editable = creating || canChange(ctx, profile);
  const slot = messageSlot();
  const fields = {
    title: field({ label: 'Title', name: 'title', required: true, value: profile?.title ?? '', attrs: { maxlength: 200, autocomplete: 'off' } }),
    description: field({ label: 'Description', name: 'description', type: 'textarea', value: profile?.description ?? '', attrs: { maxlength: 4000, rows: 2 } }),
    encoder_name: field({
      label: 'Encoder', name: 'encoder_name', type: 'select', value: profile?.encoder_name ?? 'ffmpeg',
      options: encoders.map((e) => ({ value: e.name, label: e.name })),
      hint: 'ffmpeg runs the encoder string; copy copies the media as it is and ignores it.',
    }),
    encoder_string: field({
      label: 'Encoder string', name: 'encoder_string', type: 'textarea', value: profile?.encoder_string ?? '',
      hint: 'ffmpeg output options, for example -vf scale=-2:480 -c:v libx264 -crf 23 -c:a aac -f mp4',
      attrs: { rows: 4, spellcheck: 'false', autocapitalize: 'off', autocomplete: 'off' },
    }),
  };
  const encoderString = fields.encoder_string;
  const syncEncoder = () => {
    const copy = fields.encoder_name.input.value === 'copy';
    encoderString.input.disabled = copy || !editable;
  };
  fields.encoder_name.input.addEventListener('change', syncEncoder);

  const save = button(creating ? 'Create profile' : 'Save changes', null, { kind: 'primary', type: 'submit' });
  const remove = creating ? null : button('Delete', (e) => onDelete(e.currentTarget), { kind: 'danger', label: `Delete ${profile.title}` });
  const note = !editable
    ? h('p', { class: 'alert note', role: 'note', text: profile.builtin ? 'Built-in profiles are changed by admins only.' : 'Only its owner or an admin may change this profile.' })
    : null;
  if (!editable) for (const f of Object.values(fields)) f.input.disabled = true;
  syncEncoder();
  const form = h('form', { class: 'form profile-form', novalidate: true, 'aria-label': creating ? 'New profile' : `Profile ${profile.title}` },
    slot.el, note, fields.title.el, fields.description.el, fields.encoder_name.el, encoderString.el,
    editable ? h('div', { class: 'actions' }, save, remove, link(creating ? '/profiles' : `/tasks/new?profile=${profile.id}`, creating ? 'Cancel' : 'Launch a transform with it', { class: 'btn' })) : null);

  const heading = creating ? 'New profile' : profile.title;
  const headerActions = [
    !creating && profile.builtin ? builtinBadge() : null,
    !creating && !editable ? link(`/tasks/new?profile=${profile.id}`, 'Launch a transform with it', { class: 'btn' }) : null,
    link('/profiles', 'All profiles', { class: 'btn' }),
  ];
  replace(ctx.main, pageHeader(heading, headerActions),
    h('div', { class: 'profile-page' }, h('div', { class: 'card' }, form), encodersHelp(encoders)));
  if (creating) fields.title.input.focus();

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    for (const f of Object.values(fields)) f.setError(null);
    slot.clear();
    if (!fields.title.input.value.trim()) { fields.title.setError('Give the profile a title.'); fields.title.input.focus(); return; }
    const values = {
      title: fields.title.input.value.trim(),
      description: fields.description.input.value,
      encoder_name: fields.encoder_name.input.value,
      encoder_string: fields.encoder_name.input.value === 'copy' ? '' : encoderString.input.value.trim(),
    };
    busy(save, async () => {
      try {
        if (creating) {
          const made = await api('/transform/profiles', { method: 'POST', json: values, signal: ctx.signal });
          ctx.navigate(`/profiles/${made.id}`);
          return;
        }
        // A patch of what changed only: an admin fixing a title leaves the rest untouched.
        const patch = Object.fromEntries(Object.entries(values).filter(([k, v]) => v !== profile[k]));
        if (!Object.keys(patch).length) { slot.ok('Nothing changed.'); return; }
        profile = await api(`/transform/profiles/${profile.id}`, { method: 'PATCH', json: patch, signal: ctx.signal });
        ctx.main.querySelector('h1').textContent = profile.title;
        document.title = `${profile.title} · OSCIED`;
        slot.ok('Saved.');
      } catch (err) {
        if (err.name !== 'AbortError') showFormError(fields, slot, err);
      }
    });
  });

  async function onDelete(btn) {
    await confirmAndRun(btn, `Delete the profile ${profile.title}?`,
      { confirm: 'Delete profile', title: 'Delete the profile?', failed: 'The profile was not deleted', slot }, async () => {
        await api(`/transform/profiles/${profile.id}`, { method: 'DELETE', signal: ctx.signal });
        ctx.navigate('/profiles');
      });
  }
}
