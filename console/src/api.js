// The console's one client of Berth's REST API. The access token lives in sessionStorage: this tab
// only, gone when it closes, never in a URL or localStorage. It goes out as the bearer token.

export const API_VERSION = '2023-05-01';
export const PROVIDER = 'Microsoft.ContainerInstance';
const TOKEN_KEY = 'berth.token';

export const session = {
  token() { return sessionStorage.getItem(TOKEN_KEY); },
  set(token) { sessionStorage.setItem(TOKEN_KEY, token); },
  clear() { sessionStorage.removeItem(TOKEN_KEY); session.me = null; },
  /** GET /console/v1/me once signed in: {operator: bool, subscriptions: [..]} */
  me: null,
};

/** An answer that was not a success, in ACI's shape: {status, code, message, target}. */
export class ApiError extends Error {
  constructor(status, code, message, target) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code;
    this.target = target;
  }
}

/** Adds `api-version` unless the path has one or is Berth's own (/admin, /console). */
export function withVersion(path) {
  if (/[?&]api-version=/.test(path) || path.startsWith('/admin/') || path.startsWith('/console/')) return path;
  return path + (path.includes('?') ? '&' : '?') + `api-version=${API_VERSION}`;
}

/** fetch() with the bearer token; throws ApiError for anything but 2xx. A 401 signs the tab out. */
export async function request(method, path, body, {raw = false, signal, headers = {}} = {}) {
  const init = {method, signal, headers: {...headers}};
  const token = session.token();
  if (token) init.headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const response = await fetch(withVersion(path), init);
  if (!response.ok) {
    let error = {};
    try { error = (await response.json()).error || {}; } catch { /* not JSON */ }
    if (response.status === 401) {
      session.clear();
      window.dispatchEvent(new CustomEvent('berth:signed-out', {detail: error.message}));
    }
    throw new ApiError(response.status, error.code, error.message, error.target);
  }
  if (raw) return response;
  const text = await response.text();
  return text ? JSON.parse(text) : null;
}

export const get = (path, opts) => request('GET', path, undefined, opts);
export const post = (path, body, opts) => request('POST', path, body, opts);
export const put = (path, body, opts) => request('PUT', path, body, opts);
export const del = (path, opts) => request('DELETE', path, undefined, opts);

/** The ARM path of a group (names encoded). */
export function groupPath(sub, rg, name) {
  const e = encodeURIComponent;
  return `/subscriptions/${e(sub)}/resourceGroups/${e(rg)}/providers/${PROVIDER}/containerGroups/${e(name)}`;
}

/** {sub, rg, name} from a group's ARM id. */
export function parseId(id) {
  const m = /^\/subscriptions\/([^/]+)\/resourceGroups\/([^/]+)\/providers\/[^/]+\/containerGroups\/([^/]+)$/i.exec(id || '');
  return m ? {sub: decodeURIComponent(m[1]), rg: decodeURIComponent(m[2]), name: decodeURIComponent(m[3])} : null;
}
