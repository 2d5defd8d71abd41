// TODO(lane live): an xterm.js terminal over the exec channel protocol. See the plan.
import {h} from '../dom.js';

/** Renders the Connect sub-tab into `el` for {sub, rg, name, container}; returns a cleanup. */
export function render(el, ctx) {
  el.append(h('p', {}, `connect to ${ctx.container}`));
  return () => {};
}
