// Building DOM nodes. Every value from the API goes in as a text node or a property, never
// through innerHTML, so a title like `<img src=x onerror=…>` shows as those characters.

/**
 * h('a', {href: '#/medias', class: 'btn', on: {click}}, 'text', child, [more])
 * Props: `class`, `text`, `on` (event map), `dataset`, `style` (object, set through CSSOM),
 * `attrs` (set as attributes), booleans and other keys set as properties (`hidden`,
 * `disabled`, `value`, `htmlFor`...); keys with a dash (`aria-*`, `data-*`) as attributes.
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') el.className = Array.isArray(value) ? value.filter(Boolean).join(' ') : value;
    else if (key === 'text') el.textContent = String(value);
    else if (key === 'on') for (const [name, fn] of Object.entries(value)) el.addEventListener(name, fn);
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key === 'style') Object.assign(el.style, value);
    else if (key === 'attrs') for (const [name, v] of Object.entries(value)) el.setAttribute(name, String(v));
    else if (key.includes('-') || ['role', 'for', 'scope', 'tabindex', 'colspan'].includes(key)) el.setAttribute(key, value === true ? '' : String(value));
    else el[key] = value;
  }
  append(el, children);
  return el;
}

/** Append children: strings and numbers as text, arrays flattened, null/false skipped. */
export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Replace all children of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** A stable id for label/aria wiring. */
let counter = 0;
export function uid(prefix = 'id') {
  counter += 1;
  return `${prefix}-${counter}`;
}
