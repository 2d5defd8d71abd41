// Sign in: an access token (a Berth token or a sign-in authority's access token), kept for this tab
// only (sessionStorage, via api.js `session`), checked with GET /console/v1/me.
import {h, field, replace, alertBox} from '../dom.js';
import {session} from '../api.js';
import {go} from '../router.js';
import {loadMe, topBar} from '../app.js';

const AFTER_KEY = 'berth.after';

/** Where to go once signed in: the route the guard saved, else the groups. */
function destination() {
  const after = sessionStorage.getItem(AFTER_KEY);
  sessionStorage.removeItem(AFTER_KEY);
  return after && after.startsWith('#/') && after !== '#/signin' ? after : '#/groups';
}

export function render(main) {
  const token = h('input', {type: 'password', name: 'token', autocomplete: 'off', spellcheck: 'false', required: true});
  const status = h('div', {class: 'signin-status'});
  const button = h('button', {type: 'submit', class: 'primary'}, 'Sign in');
  let gone = false;

  async function submit(event) {
    event.preventDefault();
    const value = token.value.trim();
    if (value === '') {
      replace(status, alertBox('Enter an access token.'));
      return;
    }
    button.disabled = true;
    replace(status);
    session.set(value);
    try {
      await loadMe();
      if (gone) return;
      topBar();
      go(destination());
    } catch (e) {
      session.clear();
      if (gone) return;
      topBar();
      const message = e.status === 401 || e.status === 403
        ? `That token was not accepted: ${e.message}`
        : `Signing in failed: ${e.message}`;
      replace(status, alertBox(message));
      button.disabled = false;
      token.focus();
    }
  }

  main.append(
    h('h1', {}, 'Sign in'),
    h('form', {class: 'signin', onsubmit: submit, novalidate: true},
      h('p', {class: 'muted'}, 'Paste an access token: one an operator made with ',
        h('code', {}, 'berth admin token create'), ', or a sign-in authority\'s access token. ' +
        'It is kept for this tab only.'),
      field('Access token', token).wrap,
      status,
      h('div', {class: 'toolbar'}, button)));
  token.focus();
  return () => { gone = true; };
}
