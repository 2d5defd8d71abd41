// Azure Monitor's answer read into series, and drawn as a small SVG line chart: no charting library
// (four charts of at most a few hundred points each), every label a text node.
import {h, svg} from '../dom.js';

const W = 640;
const H = 180;
const PAD = {left: 56, right: 12, top: 10, bottom: 24};
const COLOURS = ['#0f6cbd', '#c239b3', '#107c10', '#ca5010', '#5c2e91', '#038387'];

/**
 * The series of one metric of an Azure Monitor answer: [{name, points: [{t (ms), v}]}], one per
 * timeseries (named by its containerName dimension, else `unnamed`). Buckets with no
 * `average` (no sample) are left out.
 */
export function seriesOf(answer, metric, unnamed = metric) {
  const found = (answer.value || []).find((m) => m.name && m.name.value === metric);
  if (!found) return [];
  return (found.timeseries || []).map((ts) => {
    const dim = (ts.metadatavalues || [])[0];
    const points = (ts.data || [])
      .filter((d) => typeof d.average === 'number')
      .map((d) => ({t: Date.parse(d.timeStamp), v: d.average}))
      .filter((p) => Number.isFinite(p.t));
    return {name: dim ? String(dim.value) : unnamed, points};
  });
}

/** A number as the chart's axis writes it: 1234567 → "1.23M", 0.5 → "0.5". */
export function short(v) {
  const abs = Math.abs(v);
  for (const [size, unit] of [[1e9, 'G'], [1e6, 'M'], [1e3, 'k']]) {
    if (abs >= size) return `${+(v / size).toPrecision(3)}${unit}`;
  }
  return `${+v.toPrecision(3)}`;
}

/** A time of day as the axis writes it (the browser's zone). */
function clock(ms) {
  return new Date(ms).toLocaleTimeString([], {hour: '2-digit', minute: '2-digit'});
}

/**
 * A <figure> with `caption`, the chart of `series` over [from, to] (ms) and a legend with each
 * series' latest value in `unit`. The SVG is role=img, named by the caption and the latest values.
 */
export function lineChart(caption, unit, series, from, to) {
  const withPoints = series.filter((s) => s.points.length);
  const max = Math.max(0, ...withPoints.flatMap((s) => s.points.map((p) => p.v)));
  const top = max > 0 ? max * 1.1 : 1;
  const x = (t) => PAD.left + ((t - from) / Math.max(1, to - from)) * (W - PAD.left - PAD.right);
  const y = (v) => H - PAD.bottom - (v / top) * (H - PAD.top - PAD.bottom);
  const latest = withPoints.map((s) => `${s.name} ${short(s.points[s.points.length - 1].v)} ${unit}`);
  const label = `${caption}: ${latest.length ? latest.join(', ') : 'no samples'}`;
  const chart = svg('svg', {viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': label, class: 'chart'},
    svg('line', {x1: PAD.left, y1: y(0), x2: W - PAD.right, y2: y(0), class: 'axis'}),
    svg('line', {x1: PAD.left, y1: PAD.top, x2: PAD.left, y2: y(0), class: 'axis'}),
    svg('text', {x: PAD.left - 6, y: PAD.top + 10, 'text-anchor': 'end', class: 'tick'}, short(top)),
    svg('text', {x: PAD.left - 6, y: y(0), 'text-anchor': 'end', class: 'tick'}, '0'),
    svg('text', {x: PAD.left, y: H - 6, class: 'tick'}, clock(from)),
    svg('text', {x: W - PAD.right, y: H - 6, 'text-anchor': 'end', class: 'tick'}, clock(to)),
    series.map((s, i) => {
      const colour = COLOURS[i % COLOURS.length];
      const points = s.points.map((p) => `${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join(' ');
      return [
        s.points.length > 1 ? svg('polyline', {points, fill: 'none', stroke: colour, 'stroke-width': 2}) : null,
        // A lone sample is a dot: a line needs two.
        s.points.length === 1 ? svg('circle', {cx: x(s.points[0].t), cy: y(s.points[0].v), r: 3, fill: colour}) : null,
      ];
    }));
  const legend = h('ul', {class: 'legend'}, series.map((s, i) => h('li', {},
    h('span', {class: `swatch swatch-${i % COLOURS.length}`, 'aria-hidden': 'true'}),
    s.name, s.points.length ? ` — ${short(s.points[s.points.length - 1].v)} ${unit}` : ' — no samples')));
  return h('figure', {class: 'metric'}, h('figcaption', {}, caption), chart, legend);
}
