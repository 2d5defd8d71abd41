// TODO: see /work/helpers/issue18-plan.md for this page's contract.
import {h} from '../dom.js';

export function render(main) {
  main.append(h('h1', {}, 'create'));
}
