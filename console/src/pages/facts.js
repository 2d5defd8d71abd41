// What the group pages show, read from a container group's ACI JSON (as GET or LIST answer it).
// Pure functions, no DOM: console/test/facts.test.mjs runs them under `node --test`.

/** Shown where a value is absent (no IP yet, no FQDN). */
export const NONE = '—';

const props = (group) => (group && group.properties) || {};

/** `instanceView.state` (GET), else `provisioningState` (LIST has no instanceView). */
export function groupStatus(group) {
  const p = props(group);
  return (p.instanceView && p.instanceView.state) || p.provisioningState || 'Unknown';
}

export function containersOf(group) {
  return props(group).containers || [];
}

export function initContainersOf(group) {
  return props(group).initContainers || [];
}

/** The container (app or init) named `name`, or null. */
export function findContainer(group, name) {
  return [...containersOf(group), ...initContainersOf(group)].find((c) => c.name === name) || null;
}

/** A number as the portal prints sizes: at most two decimals, no trailing zeros. */
export function num(n) {
  return String(Math.round(Number(n || 0) * 100) / 100);
}

const requests = (c) => (((c.properties || {}).resources || {}).requests) || {};

/** Requested cores of one container. */
export const containerCpu = (c) => Number(requests(c).cpu || 0);
/** Requested memory (GB) of one container. */
export const containerMemory = (c) => Number(requests(c).memoryInGB || 0);

/** The group's size: the sum of its app containers' requests (init containers run before them). */
export function groupCpu(group) {
  return containersOf(group).reduce((sum, c) => sum + containerCpu(c), 0);
}

export function groupMemory(group) {
  return containersOf(group).reduce((sum, c) => sum + containerMemory(c), 0);
}

/** A container's instance view, or {} (LIST carries none). */
export function viewOf(container) {
  return ((container && container.properties) || {}).instanceView || {};
}

export function containerState(container) {
  const state = viewOf(container).currentState;
  return (state && state.state) || 'Unknown';
}

/** The sum of the app containers' restart counts; null when the answer has no instance view. */
export function groupRestarts(group) {
  const views = containersOf(group).map(viewOf).filter((v) => v.restartCount !== undefined);
  return views.length ? views.reduce((sum, v) => sum + Number(v.restartCount || 0), 0) : null;
}

/** `80/TCP, 53/UDP` */
export function portsText(ports) {
  return (ports || []).map((p) => `${p.port}/${(p.protocol || 'TCP').toUpperCase()}`).join(', ');
}

/** `10.1.0.4:80/TCP, 443/TCP`; the address alone without ports; NONE without an address. */
export function ipText(group) {
  const address = props(group).ipAddress;
  if (!address || !address.ip) return NONE;
  const ports = portsText(address.ports);
  return ports ? `${address.ip}:${ports}` : address.ip;
}

export function fqdnText(group) {
  const address = props(group).ipAddress;
  return (address && address.fqdn) || NONE;
}

/** The images of all containers, for the list's filter. */
export function imagesOf(group) {
  return [...containersOf(group), ...initContainersOf(group)].map((c) => (c.properties || {}).image || '');
}

const SECRET_KEYS = new Set(['secureValue', 'secureEnvironmentVariables', 'storageAccountKey', 'password']);

/** A deep copy without anything secret. The API never returns secrets; this is belt and braces. */
export function withoutSecrets(value) {
  if (Array.isArray(value)) return value.map(withoutSecrets);
  if (value && typeof value === 'object') {
    const out = {};
    for (const [k, v] of Object.entries(value)) if (!SECRET_KEYS.has(k)) out[k] = withoutSecrets(v);
    return out;
  }
  return value;
}

/** An ISO timestamp in the reader's locale; the text itself if it does not parse. */
export function when(ts) {
  if (!ts) return NONE;
  const d = new Date(ts);
  return Number.isNaN(d.getTime()) ? String(ts) : d.toLocaleString();
}

/** Does a list row match the filter text (name, resource group, status, image, FQDN; any case)? */
export function matches(row, text) {
  const needle = text.trim().toLowerCase();
  if (!needle) return true;
  return [row.name, row.rg, row.status, row.fqdn, ...row.images]
    .some((s) => String(s || '').toLowerCase().includes(needle));
}
