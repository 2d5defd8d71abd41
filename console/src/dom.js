// Building the page without HTML strings: every user-controlled string reaches the DOM as a text
// node or an attribute value, never as markup. Nothing in the console assigns innerHTML.

/**
 * h('button', {type: 'button', onclick: fn, 'aria-label': 'Stop'}, 'Stop')
 * - props: `class`, `on<event>` (a listener), `dataset` (an object), any other key an attribute
 *   (`true` sets it empty, `false`/`null`/`undefined` leaves it out); `value`/`checked` set the
 *   property.
 * - children: strings and numbers become text nodes; nodes are appended; arrays are flattened;
 *   null/undefined/false are skipped.
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key === 'class') {
      el.className = value;
    } else if (key === 'dataset') {
      Object.assign(el.dataset, value);
    } else if (key === 'value' || key === 'checked' || key === 'selected') {
      el[key] = value;
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

/** Appends children as h() does. */
export function append(el, children) {
  for (const child of [children].flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Replaces everything in `el` with `children`. */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** A labelled form field: <label for=id>text</label> + the control. Returns {wrap, control}. */
export function field(text, control, hint) {
  const id = control.id || `f-${Math.random().toString(36).slice(2)}`;
  control.id = id;
  const wrap = h('div', {class: 'field'}, h('label', {for: id}, text), control, hint ? h('small', {}, hint) : null);
  return {wrap, control};
}

/** A status badge: the text itself, with a class from it for colour. */
export function badge(text) {
  const t = text || 'Unknown';
  return h('span', {class: `badge badge-${t.toLowerCase().replace(/[^a-z]/g, '')}`}, t);
}

/** An error region read out when it changes. */
export function alertBox(message) {
  return h('div', {role: 'alert', class: 'error'}, message);
}

const SVG_NS = 'http://www.w3.org/2000/svg';

/** h() for SVG elements (charts): attributes only, strings as text nodes. */
export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    el.setAttribute(key, String(value));
  }
  return append(el, children);
}
