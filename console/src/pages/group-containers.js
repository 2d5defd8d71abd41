// A group's Containers tab: the containers' table and, for the selected one (the first unless the
// route names one), the sub-tabs Events, Properties, Logs and Connect. Events and Properties follow
// each poll; Logs and Connect are pages/logs.js and pages/connect.js, drawn once per route and
// stopped through the group page's cleanups.
import {h, replace, badge, alertBox} from '../dom.js';
import {link} from '../router.js';
import * as facts from './facts.js';
import {tablist} from './tabs.js';
import * as logs from './logs.js';
import * as connect from './connect.js';

const VIEWS = [['events', 'Events'], ['properties', 'Properties'], ['logs', 'Logs'], ['connect', 'Connect']];
const COLUMNS = ['Name', 'Image', 'State', 'Restarts', 'CPU', 'Memory (GB)', 'Ports'];
const EVENT_COLUMNS = ['Name', 'Type', 'Count', 'First', 'Last', 'Message'];

/**
 * Draws the tab into `panel`; returns {update(group)}. params: the route's {container?, view?};
 * ctx: {sub, rg, name, base (link segments of the group), cleanups (the page runs them on leaving)}.
 */
export function containersTab(panel, params, ctx) {
  const viewName = VIEWS.some(([v]) => v === params.view) ? params.view : 'events';
  const tables = h('div');
  const detail = h('div', {class: 'container-detail'});
  replace(panel, tables, detail);
  let lastTables = null;
  let opened = false;
  let selected = null;
  let view = null;

  function drawTables(group) {
    const apps = facts.containersOf(group);
    const inits = facts.initContainersOf(group);
    const key = JSON.stringify([apps.map(cells), inits.map(cells), selected]);
    if (key === lastTables) return;
    lastTables = key;
    replace(tables,
      containerTable('Containers', apps, ctx.base, selected),
      inits.length ? [h('h2', {}, 'Init containers'), containerTable('Init containers', inits, ctx.base, selected)] : null);
  }

  /** The first poll picks the container and draws its view; later polls only update it. */
  function open(group) {
    const all = [...facts.containersOf(group), ...facts.initContainersOf(group)];
    const name = params.container || (all[0] && all[0].name);
    if (!name) {
      replace(detail, h('p', {}, 'No containers'));
      return;
    }
    if (!all.some((c) => c.name === name)) {
      replace(detail, alertBox(`Container ${name} was not found.`));
      return;
    }
    selected = name;
    const views = tablist('Container views',
      VIEWS.map(([v, label]) => [v, label, link(...ctx.base, 'containers', name, v)]), viewName, 'view', 'container-panel');
    const body = h('div', {role: 'tabpanel', id: 'container-panel', 'aria-labelledby': `view-${viewName}`});
    replace(detail, h('h2', {}, `Container ${name}`), views, body);
    const live = {sub: ctx.sub, rg: ctx.rg, name: ctx.name, container: name};
    if (viewName === 'logs' || viewName === 'connect') {
      const stop = (viewName === 'logs' ? logs : connect).render(body, live);
      if (typeof stop === 'function') ctx.cleanups.push(stop);
    } else {
      view = viewName === 'properties' ? propertiesView(body, name) : eventsView(body, name);
    }
  }

  return {
    update(group) {
      if (!opened) { opened = true; open(group); }
      drawTables(group);
      if (view) view.update(group);
    },
  };
}

/** A container's row as text: name, image, state, restarts, CPU, memory, ports. */
function cells(c) {
  const p = c.properties || {};
  const restarts = facts.viewOf(c).restartCount;
  return [c.name, p.image || facts.NONE, facts.containerState(c),
    restarts === undefined ? facts.NONE : String(restarts),
    facts.num(facts.containerCpu(c)), facts.num(facts.containerMemory(c)), facts.portsText(p.ports) || facts.NONE];
}

function containerTable(label, containers, base, selected) {
  return h('table', {'aria-label': label, class: 'list'},
    h('thead', {}, h('tr', {}, COLUMNS.map((c) => h('th', {scope: 'col'}, c)))),
    h('tbody', {}, containers.map((c) => {
      const [name, image, state, ...rest] = cells(c);
      const current = name === selected;
      return h('tr', {class: current ? 'selected' : null},
        h('td', {}, h('a', {href: link(...base, 'containers', name, 'events'), 'aria-current': current ? 'true' : null}, name)),
        h('td', {}, image),
        h('td', {}, badge(state)),
        rest.map((text) => h('td', {}, text)));
    })));
}

/** Events: the container's, then the group's (scheduling, pulls, stops). */
function eventsView(el, name) {
  let last = null;
  return {
    update(group) {
      const container = facts.findContainer(group, name);
      const own = facts.viewOf(container).events || [];
      const groupEvents = ((group.properties || {}).instanceView || {}).events || [];
      const key = JSON.stringify([own, groupEvents]);
      if (key === last) return;
      last = key;
      replace(el, eventTable('Events', own), h('h3', {}, 'Group events'), eventTable('Group events', groupEvents));
    },
  };
}

function eventTable(label, events) {
  const rows = events.length
    ? events.map((e) => h('tr', {},
      h('td', {}, e.name || ''), h('td', {}, e.type || ''), h('td', {}, String(e.count ?? '')),
      h('td', {}, facts.when(e.firstTimestamp)), h('td', {}, facts.when(e.lastTimestamp)),
      h('td', {}, e.message || '')))
    : [h('tr', {}, h('td', {colspan: String(EVENT_COLUMNS.length), class: 'empty'}, 'No events'))];
  return h('table', {'aria-label': label, class: 'list events'},
    h('thead', {}, h('tr', {}, EVENT_COLUMNS.map((c) => h('th', {scope: 'col'}, c)))),
    h('tbody', {}, rows));
}

/** Properties: the container's current and previous state, then its whole JSON. */
function propertiesView(el, name) {
  const states = h('dl', {class: 'states'});
  const json = h('pre', {'aria-label': 'Properties', class: 'json', tabindex: '0'});
  replace(el, states, json);
  let last = null;
  return {
    update(group) {
      const container = facts.findContainer(group, name);
      const text = JSON.stringify(facts.withoutSecrets(container), null, 2);
      if (text === last) return;
      last = text;
      const v = facts.viewOf(container);
      replace(states,
        h('dt', {}, 'Current state'), h('dd', {}, stateText(v.currentState)),
        h('dt', {}, 'Previous state'), h('dd', {}, stateText(v.previousState)));
      replace(json, text);
    },
  };
}

/** `Terminated (Completed), exit code 0, started <time>, finished <time>` */
function stateText(s) {
  if (!s || !s.state) return facts.NONE;
  const parts = [s.detailStatus ? `${s.state} (${s.detailStatus})` : s.state];
  if (s.exitCode !== undefined && s.exitCode !== null) parts.push(`exit code ${s.exitCode}`);
  if (s.startTime) parts.push(`started ${facts.when(s.startTime)}`);
  if (s.finishTime) parts.push(`finished ${facts.when(s.finishTime)}`);
  return parts.join(', ');
}
