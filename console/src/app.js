// The console's shell: sign-in guard, the top bar, and the routes of every page.
import {h, replace} from './dom.js';
import {get, session} from './api.js';
import {route, start, go, current, render as rerender} from './router.js';
import * as signin from './pages/signin.js';
import * as groups from './pages/groups.js';
import * as group from './pages/group.js';
import * as create from './pages/create.js';
import * as billing from './pages/billing.js';
import * as nodes from './pages/nodes.js';

/** Loads who the token belongs to; false if it is not accepted. */
export async function loadMe() {
  session.me = await get('/console/v1/me');
  return true;
}

function topBar() {
  const top = document.getElementById('top');
  const signedIn = Boolean(session.token());
  const me = session.me;
  replace(top, h('nav', {'aria-label': 'Main'},
    h('a', {href: '#/groups', class: 'brand'}, 'Berth'),
    signedIn ? [
      h('a', {href: '#/groups'}, 'Container groups'),
      h('a', {href: '#/create'}, 'Create'),
      h('a', {href: '#/billing'}, 'Billing'),
      me && me.operator ? h('a', {href: '#/nodes'}, 'Nodes') : null,
      h('button', {type: 'button', class: 'signout', onclick: () => { session.clear(); go('#/signin'); }}, 'Sign out'),
    ] : null));
}

/** Wraps a page: signed-out tabs go to sign in (and come back after). */
function guarded(render) {
  return (main, params) => {
    if (!session.token()) {
      sessionStorage.setItem('berth.after', location.hash);
      go('#/signin');
      return undefined;
    }
    if (!session.me) {
      // A reload in a signed-in tab: learn who we are first, then draw the page.
      loadMe().then(() => { topBar(); rerender(); }).catch(() => go('#/signin'));
      return undefined;
    }
    topBar();
    return render(main, params);
  };
}

route('/signin', (main, params) => { topBar(); return signin.render(main, params); });
route('/groups', guarded(groups.render));
route('/groups/:sub/:rg/:name', guarded(group.render));
route('/groups/:sub/:rg/:name/:tab', guarded(group.render));
route('/groups/:sub/:rg/:name/containers/:container/:view', guarded((main, p) => group.render(main, {...p, tab: 'containers'})));
route('/create', guarded(create.render));
route('/billing', guarded(billing.render));
route('/nodes', guarded(nodes.render));

window.addEventListener('berth:signed-out', () => { if (current() !== '/signin') go('#/signin'); });
window.addEventListener('DOMContentLoaded', () => { topBar(); start(); });
export {topBar};
