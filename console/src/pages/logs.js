// TODO(lane live): a container's logs, followed live. See the plan.
import {h} from '../dom.js';

/** Renders the Logs sub-tab into `el` for {sub, rg, name, container}; returns a cleanup. */
export function render(el, ctx) {
  el.append(h('p', {}, `logs of ${ctx.container}`));
  return () => {};
}
