// Sign in: an access token (a Berth token or a sign-in authority's access token), kept for this tab.
import {h} from '../dom.js';

export function render(main) {
  // TODO(lane admin): the form (label `Access token`, button `Sign in`), GET /console/v1/me to check
  // the token, a role=alert "That token was not accepted: …" on failure, then go to the saved route.
  main.append(h('h1', {}, 'Sign in'));
}
