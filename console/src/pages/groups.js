// Container groups: the caller's groups in every subscription it may see, filtered by text and
// resource group, polled every 2 s while the tab is visible. Rows are updated in place (a cell is
// redrawn only when its value changed), so focus and the filter survive each refresh.
import {h, replace, field, badge, alertBox} from '../dom.js';
import {ApiError, PROVIDER, get, groupPath, parseId, session} from '../api.js';
import {link} from '../router.js';
import {poll} from './poll.js';
import * as facts from './facts.js';

const POLL_MS = 2000;
/** Group GETs in flight at once (LIST has no instanceView: status and restarts need a GET each). */
const PARALLEL_GETS = 4;
const ALL = '';
const COLUMNS = ['Name', 'Resource group', 'Status', 'OS type', 'IP address', 'FQDN', 'CPU', 'Memory (GB)', 'Restarts'];

export function render(main) {
  const abort = new AbortController();
  const state = {rows: [], loaded: false, resourceGroups: [], failures: ''};
  const filter = h('input', {type: 'search', autocomplete: 'off', spellcheck: 'false', oninput: draw});
  const rgSelect = h('select', {onchange: draw}, h('option', {value: ALL}, 'All resource groups'));
  const tbody = h('tbody');
  const table = h('table', {'aria-label': 'Container groups', class: 'list'},
    h('thead', {}, h('tr', {}, COLUMNS.map((c) => h('th', {scope: 'col'}, c)))), tbody);
  const notice = h('p', {class: 'notice', 'aria-live': 'polite'}, 'Loading…');
  const errors = h('div', {class: 'errors'});
  const rowEls = new Map();

  replace(main,
    h('h1', {}, 'Container groups'),
    h('div', {class: 'toolbar filters'}, field('Filter', filter).wrap, field('Resource group', rgSelect).wrap),
    errors, table, notice);

  function draw() {
    const rg = rgSelect.value;
    const shown = state.rows.filter((r) => (rg === ALL || r.rg === rg) && facts.matches(r, filter.value));
    const trs = shown.map((r) => rowEl(rowEls, r));
    const current = [...tbody.children];
    if (current.length !== trs.length || current.some((tr, i) => tr !== trs[i])) tbody.replaceChildren(...trs);
    if (!state.loaded) return;
    if (state.rows.length === 0) replace(notice, 'No container groups');
    else if (shown.length === 0) replace(notice, 'No container groups match the filter');
    else replace(notice);
  }

  function setResourceGroups(names) {
    const selected = rgSelect.value;
    const wanted = [...new Set(selected === ALL ? names : [...names, selected])].sort(byText);
    if (wanted.join('\n') === state.resourceGroups.join('\n')) return;
    state.resourceGroups = wanted;
    replace(rgSelect, h('option', {value: ALL}, 'All resource groups'),
      wanted.map((n) => h('option', {value: n}, n)));
    rgSelect.value = selected;
  }

  async function refresh() {
    const {rows, failures} = await loadRows(abort.signal);
    if (abort.signal.aborted) return;
    if (failures.join('\n') !== state.failures) {
      state.failures = failures.join('\n');
      replace(errors, failures.map((m) => alertBox(m)));
    }
    for (const id of rowEls.keys()) if (!rows.some((r) => r.id === id)) rowEls.delete(id);
    state.rows = rows;
    state.loaded = true;
    setResourceGroups(rows.map((r) => r.rg));
    draw();
  }

  const poller = poll(refresh, POLL_MS);
  return () => { poller.stop(); abort.abort(); };
}

const byText = (a, b) => a.localeCompare(b, undefined, {sensitivity: 'base'});

/** The table row of `r`, made once per group and updated cell by cell. */
function rowEl(rowEls, r) {
  let entry = rowEls.get(r.id);
  if (!entry) {
    const tds = COLUMNS.map(() => h('td'));
    entry = {tr: h('tr', {}, tds), tds, keys: []};
    rowEls.set(r.id, entry);
  }
  const cells = [
    [`${r.href}\n${r.name}`, () => h('a', {href: r.href}, r.name)],
    [r.rg, () => r.rg],
    [r.status, () => badge(r.status)],
    [r.os, () => r.os],
    [r.ip, () => r.ip],
    [r.fqdn, () => r.fqdn],
    [r.cpu, () => r.cpu],
    [r.memory, () => r.memory],
    [r.restarts, () => r.restarts],
  ];
  cells.forEach(([key, content], i) => {
    if (entry.keys[i] === key) return;
    entry.keys[i] = key;
    replace(entry.tds[i], content());
  });
  return entry.tr;
}

/** Every group of every subscription of the caller, each with its instance view where it has one. */
async function loadRows(signal) {
  const subs = (session.me && session.me.subscriptions) || [];
  const failures = [];
  const listed = [];
  const lists = await Promise.allSettled(subs.map((sub) => listAll(sub, signal)));
  lists.forEach((result, i) => {
    if (result.status === 'fulfilled') listed.push(...result.value);
    else if (!signal.aborted) failures.push(`Could not list the container groups of subscription ${subs[i]}: ${result.reason.message}`);
  });
  const rows = [];
  const views = await mapLimit(listed, PARALLEL_GETS, (group) => view(group, signal));
  listed.forEach((group, i) => {
    if (views[i] === GONE) return;
    const row = toRow(views[i] || group);
    if (row) rows.push(row);
  });
  rows.sort((a, b) => byText(a.name, b.name) || byText(a.rg, b.rg) || byText(a.sub, b.sub));
  return {rows, failures};
}

const GONE = Symbol('deleted since the list');

/** The group's GET (with instanceView); GONE if it was deleted meanwhile; null on any other error. */
async function view(group, signal) {
  const id = parseId(group.id);
  if (!id) return null;
  try {
    return await get(groupPath(id.sub, id.rg, id.name), {signal});
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) return GONE;
    return null;
  }
}

/** LIST of one subscription, following nextLink (only its path and query: always this origin). */
async function listAll(sub, signal) {
  let path = `/subscriptions/${encodeURIComponent(sub)}/providers/${PROVIDER}/containerGroups`;
  const groups = [];
  while (path) {
    const page = await get(path, {signal});
    groups.push(...((page && page.value) || []));
    const next = page && page.nextLink ? new URL(page.nextLink, location.origin) : null;
    path = next ? next.pathname + next.search : null;
  }
  return groups;
}

async function mapLimit(items, limit, fn) {
  const out = new Array(items.length);
  let next = 0;
  async function worker() {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]);
    }
  }
  await Promise.all(Array.from({length: Math.min(limit, items.length)}, worker));
  return out;
}

function toRow(group) {
  const id = parseId(group.id);
  if (!id) return null;
  const restarts = facts.groupRestarts(group);
  return {
    id: group.id.toLowerCase(),
    sub: id.sub,
    rg: id.rg,
    name: group.name || id.name,
    href: link('groups', id.sub, id.rg, id.name),
    status: facts.groupStatus(group),
    os: (group.properties && group.properties.osType) || facts.NONE,
    ip: facts.ipText(group),
    fqdn: facts.fqdnText(group),
    cpu: facts.num(facts.groupCpu(group)),
    memory: facts.num(facts.groupMemory(group)),
    restarts: restarts === null ? facts.NONE : String(restarts),
    images: facts.imagesOf(group),
  };
}
