// Unit tests of console/src/pages/chart.js's pure parts: `node --test console/test`.
import {test} from 'node:test';
import assert from 'node:assert/strict';
import {seriesOf, short} from '../src/pages/chart.js';

// An Azure Monitor answer as the apiserver writes it (apiserver/src/monitor/response.rs).
const answer = {
  value: [
    {
      name: {value: 'CpuUsage', localizedValue: 'CPU Usage'},
      timeseries: [
        {
          metadatavalues: [{name: {value: 'containername'}, value: 'app'}],
          data: [
            {timeStamp: '2026-12-02T12:00:00Z', average: 250, count: 1},
            {timeStamp: '2026-12-02T12:01:00Z', count: 0},
            {timeStamp: '2026-12-02T12:02:00Z', average: 0, count: 1},
          ],
        },
        {metadatavalues: [{name: {value: 'containername'}, value: 'sidecar'}], data: []},
      ],
    },
    {name: {value: 'NetworkBytesReceivedPerSecond'}, timeseries: [{metadatavalues: [], data: [
      {timeStamp: '2026-12-02T12:00:00Z', average: 1500},
    ]}]},
  ],
};

test('a metric becomes one series per container, empty buckets left out, zeros kept', () => {
  assert.deepEqual(seriesOf(answer, 'CpuUsage'), [
    {name: 'app', points: [{t: Date.UTC(2026, 11, 2, 12, 0), v: 250}, {t: Date.UTC(2026, 11, 2, 12, 2), v: 0}]},
    {name: 'sidecar', points: []},
  ]);
});

test('a series without a dimension is named as asked, else by its metric; an absent metric has none', () => {
  assert.deepEqual(seriesOf(answer, 'NetworkBytesReceivedPerSecond').map((s) => s.name), ['NetworkBytesReceivedPerSecond']);
  assert.deepEqual(seriesOf(answer, 'NetworkBytesReceivedPerSecond', 'web').map((s) => s.name), ['web']);
  assert.deepEqual(seriesOf(answer, 'MemoryUsage'), []);
  assert.deepEqual(seriesOf({}, 'CpuUsage'), []);
});

test('axis numbers are short', () => {
  assert.equal(short(0), '0');
  assert.equal(short(0.5), '0.5');
  assert.equal(short(250), '250');
  assert.equal(short(1234567), '1.23M');
  assert.equal(short(52_428_800), '52.4M');
  assert.equal(short(2500), '2.5k');
});
