// Hash routes: every page has a URL (#/groups/…), so deep links and the back button work, and the
// server serves one index.html. A page's render(main, params) may return a cleanup function, run when
// the route changes (stop polling, abort a log stream, close a socket).

const routes = [];
let cleanup = null;

/** route('/groups/:sub/:rg/:name/containers/:container/:view', render): `:x` matches one segment. */
export function route(pattern, render) {
  const names = [];
  const source = pattern.replace(/:([a-zA-Z]+)/g, (_, n) => { names.push(n); return '([^/]+)'; });
  routes.push({regex: new RegExp(`^${source}$`), names, render});
}

/** The hash of a path built from segments, each encoded: link('groups', sub, rg, name) → '#/groups/…'. */
export function link(...segments) {
  return '#/' + segments.map((s) => encodeURIComponent(s)).join('/');
}

/** Goes to a hash (adds a history entry). */
export function go(hash) {
  if (location.hash === hash) render(); else location.hash = hash;
}

/** The current path, without '#'. */
export function current() {
  return location.hash.replace(/^#/, '') || '/';
}

export function render() {
  if (cleanup) { try { cleanup(); } catch (e) { console.error(e); } cleanup = null; }
  const path = current();
  const main = document.getElementById('main');
  main.replaceChildren();
  for (const r of routes) {
    const m = r.regex.exec(path);
    if (!m) continue;
    const params = {};
    r.names.forEach((n, i) => { params[n] = decodeURIComponent(m[i + 1]); });
    const result = r.render(main, params);
    if (typeof result === 'function') cleanup = result;
    return;
  }
  go('#/groups');
}

export function start() {
  window.addEventListener('hashchange', render);
  render();
}
