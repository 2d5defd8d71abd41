// A tab list of links (each tab is a URL, so the back button and deep links work), with the arrow,
// Home and End keys moving between tabs as the ARIA tabs pattern has it.
import {h} from '../dom.js';

/**
 * tabs: [[key, label, href]]; `selected` the key shown; ids are `${prefix}-${key}`, each tab
 * controlling the element with id `panelId`.
 */
export function tablist(label, tabs, selected, prefix, panelId) {
  const links = tabs.map(([key, text, href]) => h('a', {
    role: 'tab', id: `${prefix}-${key}`, href, 'aria-selected': String(key === selected),
    'aria-controls': panelId,
  }, text));
  const onkeydown = (event) => {
    const i = links.indexOf(document.activeElement);
    if (i < 0) return;
    const next = {ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: links.length - 1}[event.key];
    if (next === undefined) return;
    event.preventDefault();
    links[(next + links.length) % links.length].focus();
  };
  return h('div', {role: 'tablist', 'aria-label': label, onkeydown}, links);
}
