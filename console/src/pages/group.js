// A container group: its name, the Start/Stop/Restart/Delete commands (Delete asks first, naming the
// group), and the tabs Overview, Containers (pages/group-containers.js) and Metrics (pages/metrics.js). The group is polled every
// 2 s while the tab is visible; each poll updates what changed, never a live log or terminal.
import {h, replace, badge, alertBox} from '../dom.js';
import {ApiError, del, get, groupPath, parseId, post, session} from '../api.js';
import {go, link} from '../router.js';
import {poll} from './poll.js';
import * as facts from './facts.js';
import {containersTab} from './group-containers.js';
import {metricsTab} from './metrics.js';
import {tablist} from './tabs.js';

const POLL_MS = 2000;
const TABS = [['overview', 'Overview'], ['containers', 'Containers'], ['metrics', 'Metrics']];
const ACTIONS = [
  {label: 'Start', verb: 'start', doing: 'Starting', done: 'Start requested'},
  {label: 'Stop', verb: 'stop', doing: 'Stopping', done: 'Stop requested'},
  {label: 'Restart', verb: 'restart', doing: 'Restarting', done: 'Restart requested'},
];

/** The last answer for a group, drawn at once when another tab of the same group opens: {key, group}. */
let cache = null;

/** params: {sub, rg, name, tab?, container?, view?} from the route. */
export function render(main, params) {
  const {sub, rg, name} = params;
  const tab = ['containers', 'metrics'].includes(params.tab) ? params.tab : 'overview';
  const path = groupPath(sub, rg, name);
  // The token is part of the key: after signing in as someone else, nothing of the last caller shows.
  const key = `${session.token()}\n${path.toLowerCase()}`;
  const abort = new AbortController();
  const cleanups = [];
  const base = ['groups', sub, rg, name];
  let poller = null;

  const notice = h('p', {class: 'notice', 'aria-live': 'polite'});
  const problem = h('div', {class: 'errors'});
  let problemText = '';
  const setProblem = (text) => {
    if (text === problemText) return;
    problemText = text;
    replace(problem, text ? alertBox(text) : null);
  };

  const buttons = [
    ...ACTIONS.map((a) => h('button', {type: 'button', onclick: () => act(a)}, a.label)),
    h('button', {type: 'button', class: 'danger', onclick: confirmDelete}, 'Delete'),
  ];
  const setBusy = (busy) => buttons.forEach((b) => { b.disabled = busy; });
  const tabs = tablist('Container group views',
    TABS.map(([t, label]) => [t, label, link(...base, t)]), tab, 'tab', 'group-panel');
  const panel = h('section', {role: 'tabpanel', id: 'group-panel', 'aria-labelledby': `tab-${tab}`});
  const body = h('div', {}, h('div', {class: 'toolbar actions'}, buttons), notice, problem, tabs, panel);
  replace(main, h('h1', {}, name), body);

  const ctx = {sub, rg, name, base, cleanups};
  const view = tab === 'containers' ? containersTab(panel, params, ctx)
    : tab === 'metrics' ? metricsTab(panel, ctx) : overview(panel);

  function show(group) {
    cache = {key, group};
    view.update(group);
  }

  function notFound() {
    runCleanups(cleanups);
    if (cache && cache.key === key) cache = null;
    replace(body, alertBox(`Container group ${name} was not found.`));
  }

  async function refresh() {
    try {
      const group = await get(path, {signal: abort.signal});
      if (abort.signal.aborted) return;
      setProblem('');
      show(group);
    } catch (e) {
      if (abort.signal.aborted) return;
      if (e instanceof ApiError && e.status === 404) {
        if (poller) poller.stop();
        notFound();
        return;
      }
      setProblem(`Could not load container group ${name}: ${e.message}`);
    }
  }

  async function act(action) {
    setBusy(true);
    replace(notice, `${action.doing} ${name}…`);
    try {
      await post(`${path}/${action.verb}`);
      if (abort.signal.aborted) return;
      replace(notice, `${action.done} for ${name}.`);
      setProblem('');
      if (poller) poller.now();
    } catch (e) {
      if (abort.signal.aborted) return;
      replace(notice);
      setProblem(`Could not ${action.verb} ${name}: ${e.message}`);
    } finally {
      setBusy(false);
    }
  }

  function confirmDelete() {
    const title = h('p', {id: 'delete-title', class: 'dialog-title'}, `Delete container group ${name}?`);
    const error = h('div', {class: 'errors'});
    const cancel = h('button', {type: 'button', onclick: () => dialog.close()}, 'Cancel');
    const confirm = h('button', {type: 'button', class: 'danger', onclick: remove}, `Delete ${name}`);
    const dialog = h('dialog', {'aria-labelledby': 'delete-title', onclose: () => dialog.remove()},
      title,
      h('p', {class: 'hint'}, 'Its containers are stopped and removed. This cannot be undone.'),
      error,
      h('div', {class: 'toolbar'}, cancel, confirm));

    async function remove() {
      cancel.disabled = true;
      confirm.disabled = true;
      try {
        await del(path);
        if (cache && cache.key === key) cache = null;
        dialog.close();
        go('#/groups');
      } catch (e) {
        if (abort.signal.aborted) return;
        replace(error, alertBox(`Could not delete ${name}: ${e.message}`));
        cancel.disabled = false;
        confirm.disabled = false;
      }
    }

    main.append(dialog);
    dialog.showModal();
    cancel.focus();
  }

  if (cache && cache.key === key) show(cache.group);
  poller = poll(refresh, POLL_MS);
  return () => {
    poller.stop();
    abort.abort();
    runCleanups(cleanups);
  };
}

function runCleanups(cleanups) {
  for (const stop of cleanups.splice(0)) {
    try { stop(); } catch (e) { console.error(e); }
  }
}

/** Overview: the essentials and the JSON view of the whole group. */
function overview(panel) {
  const essentials = h('dl', {class: 'essentials'});
  const json = h('pre', {'aria-label': 'JSON view', class: 'json', tabindex: '0'});
  replace(panel, h('h2', {class: 'visually-hidden'}, 'Essentials'), essentials, h('h2', {}, 'JSON view'), json);
  let lastFacts = null;
  let lastJson = null;

  return {
    update(group) {
      const p = group.properties || {};
      const id = parseId(group.id);
      const items = [
        ['Status', facts.groupStatus(group), badge],
        ['Provisioning state', p.provisioningState || facts.NONE],
        ['IP address', facts.ipText(group)],
        ['FQDN', facts.fqdnText(group)],
        ['OS type', p.osType || facts.NONE],
        ['Restart policy', p.restartPolicy || facts.NONE],
        ['CPU', facts.num(facts.groupCpu(group))],
        ['Memory (GB)', facts.num(facts.groupMemory(group))],
        ['Location', group.location || facts.NONE],
        ['Resource group', id ? id.rg : facts.NONE],
        ['Tags', tagsText(group.tags)],
      ];
      const factsKey = JSON.stringify(items.map(([dt, dd]) => [dt, dd]));
      if (factsKey !== lastFacts) {
        lastFacts = factsKey;
        replace(essentials, items.map(([dt, dd, as]) => [h('dt', {}, dt), h('dd', {}, as ? as(dd) : dd)]));
      }
      const text = JSON.stringify(facts.withoutSecrets(group), null, 2);
      if (text !== lastJson) {
        lastJson = text;
        replace(json, text);
      }
    },
  };
}

/** `key: value` per tag, comma separated; NONE without tags. */
function tagsText(tags) {
  const entries = Object.entries(tags || {});
  return entries.length ? entries.map(([k, v]) => `${k}: ${v}`).join(', ') : facts.NONE;
}
