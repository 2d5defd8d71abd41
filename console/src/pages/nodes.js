// Nodes (operators): GET /admin/v1/nodes (proto/src/admin.rs `Node`), refreshed while visible. A
// tenant's token is refused by the API; its 403 message is shown.
import {h, replace, alertBox, badge} from '../dom.js';
import {get} from '../api.js';

const POLL_MS = 5000;
const HEAD = ['Name', 'OS type', 'Status', 'CPU', 'Memory (GB)', 'Groups'];

/** Up to 2 decimals, without trailing zeros. */
function num(value) {
  const n = Number(value);
  return Number.isFinite(n) ? String(Number(n.toFixed(2))) : '';
}

function usage(resources, key) {
  return `${num((resources.allocated || {})[key])} / ${num((resources.capacity || {})[key])}`;
}

function statusCell(node) {
  const notes = [node.draining ? 'draining' : null, node.cordoned && !node.draining ? 'cordoned' : null].filter(Boolean);
  return h('td', {}, badge(node.status), notes.length ? h('span', {class: 'muted'}, ` (${notes.join(', ')})`) : null);
}

function row(node) {
  return h('tr', {},
    h('td', {title: node.lastHeartbeat ? `Last heartbeat ${node.lastHeartbeat}` : null}, node.name),
    h('td', {}, node.osType),
    statusCell(node),
    h('td', {class: 'num'}, usage(node, 'cpu')),
    h('td', {class: 'num'}, usage(node, 'memoryInGB')),
    h('td', {class: 'num'}, String(node.groups ?? 0)));
}

export function render(main) {
  const body = h('tbody', {});
  const table = h('table', {'aria-label': 'Nodes'},
    h('thead', {}, h('tr', {}, HEAD.map((t) => h('th', {scope: 'col'}, t)))), body);
  const status = h('div', {});
  main.append(h('h1', {}, 'Nodes'), status);
  const aborter = new AbortController();
  let timer = null;
  let shown = false;

  async function load() {
    timer = null;
    try {
      const answer = await get('/admin/v1/nodes', {signal: aborter.signal});
      const nodes = [...((answer && answer.value) || [])].sort((a, b) => a.name.localeCompare(b.name));
      replace(body, nodes.length === 0
        ? h('tr', {}, h('td', {colspan: String(HEAD.length)}, 'No nodes have joined'))
        : nodes.map(row));
      replace(status);
      if (!shown) { main.append(table); shown = true; }
    } catch (e) {
      if (e && e.name === 'AbortError') return;
      replace(status, alertBox(e.message));
      if (e.status === 403) return; // a tenant: asking again will not change the answer
    }
    if (!aborter.signal.aborted) timer = setTimeout(tick, POLL_MS);
  }

  function tick() {
    if (document.visibilityState === 'visible') load(); else timer = setTimeout(tick, POLL_MS);
  }

  load();
  return () => { aborter.abort(); if (timer) clearTimeout(timer); };
}
