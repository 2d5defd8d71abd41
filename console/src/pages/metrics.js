// A group's Metrics tab: CPU, memory and network over a chosen range, from Azure Monitor's metrics
// route (the one `az monitor metrics list` reads), refreshed every 30 s while the tab is visible.
import {h, replace, field, alertBox} from '../dom.js';
import {get, groupPath} from '../api.js';
import {poll} from './poll.js';
import {lineChart, seriesOf} from './chart.js';

const MONITOR_VERSION = '2018-01-01';
const REFRESH_MS = 30_000;
/** [label, timespan, interval, span in ms] */
const RANGES = [
  ['Last 15 minutes', 'PT15M', 'PT1M', 15 * 60_000],
  ['Last hour', 'PT1H', 'PT1M', 3_600_000],
  ['Last 6 hours', 'PT6H', 'PT5M', 6 * 3_600_000],
  ['Last 24 hours', 'P1D', 'PT15M', 24 * 3_600_000],
];

function query(metrics, range, perContainer) {
  const [, timespan, interval] = range;
  const params = [
    `api-version=${MONITOR_VERSION}`,
    `metricnames=${metrics.join(',')}`,
    `timespan=${timespan}`,
    `interval=${interval}`,
    'aggregation=Average',
  ];
  if (perContainer) params.push(`$filter=${encodeURIComponent("containerName eq '*'")}`);
  return params.join('&');
}

/** The Metrics tab in `panel` for {sub, rg, name}; its refresh stops through ctx.cleanups. */
export function metricsTab(panel, {sub, rg, name, cleanups}) {
  const base = `${groupPath(sub, rg, name)}/providers/Microsoft.Insights/metrics`;
  const range = h('select', {onchange: () => poller.now()},
    RANGES.map(([label], i) => h('option', {value: String(i)}, label)));
  const charts = h('div', {class: 'charts'});
  const problem = h('div', {class: 'errors'});
  replace(panel, h('div', {class: 'toolbar'}, field('Time range', range).wrap), problem, charts);
  const abort = new AbortController();

  async function refresh() {
    const chosen = RANGES[Number(range.value)] || RANGES[0];
    try {
      // Network counters are the group's (its containers share one namespace): no container filter.
      const [perContainer, network] = await Promise.all([
        get(`${base}?${query(['CpuUsage', 'MemoryUsage'], chosen, true)}`, {signal: abort.signal}),
        get(`${base}?${query(['NetworkBytesReceivedPerSecond', 'NetworkBytesTransmittedPerSecond'], chosen, false)}`,
          {signal: abort.signal}),
      ]);
      const to = Date.now();
      const from = to - chosen[3];
      replace(problem);
      replace(charts,
        lineChart('CPU usage', 'millicores', seriesOf(perContainer, 'CpuUsage'), from, to),
        lineChart('Memory usage', 'B', seriesOf(perContainer, 'MemoryUsage'), from, to),
        lineChart('Network bytes received per second', 'B/s', seriesOf(network, 'NetworkBytesReceivedPerSecond', name), from, to),
        lineChart('Network bytes transmitted per second', 'B/s', seriesOf(network, 'NetworkBytesTransmittedPerSecond', name), from, to));
    } catch (e) {
      if (abort.signal.aborted) return;
      replace(problem, alertBox(`Could not load the metrics of ${name}: ${e.message}`));
    }
  }

  const poller = poll(refresh, REFRESH_MS);
  cleanups.push(() => { poller.stop(); abort.abort(); });
  // The group's own poll feeds nothing here: metrics come from their own route.
  return {update() {}};
}
