// Unit tests of console/src/pages/facts.js (pure; no DOM): `node --test console/test`.
import {test} from 'node:test';
import assert from 'node:assert/strict';
import * as facts from '../src/pages/facts.js';

const container = (name, cpu, memoryInGB, view) => ({
  name,
  properties: {image: `img/${name}`, resources: {requests: {cpu, memoryInGB}}, ...(view ? {instanceView: view} : {})},
});

const got = {
  id: '/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerInstance/containerGroups/web',
  name: 'web',
  properties: {
    provisioningState: 'Succeeded',
    containers: [container('a', 1, 1.5, {restartCount: 2, currentState: {state: 'Running'}}), container('b', 0.5, 0.25, {restartCount: 1})],
    initContainers: [container('init', 2, 2)],
    ipAddress: {ip: '10.1.0.4', ports: [{port: 80, protocol: 'TCP'}, {port: 53, protocol: 'udp'}], fqdn: 'web.example'},
    instanceView: {state: 'Running'},
  },
};
const listed = {...got, properties: {...got.properties, instanceView: undefined,
  containers: [container('a', 1, 1.5), container('b', 0.5, 0.25)]}};

test('status is the instance view state, else the provisioning state', () => {
  assert.equal(facts.groupStatus(got), 'Running');
  assert.equal(facts.groupStatus(listed), 'Succeeded');
  assert.equal(facts.groupStatus({}), 'Unknown');
});

test('sizes sum the app containers only, printed without float noise', () => {
  assert.equal(facts.num(facts.groupCpu(got)), '1.5');
  assert.equal(facts.num(facts.groupMemory(got)), '1.75');
  assert.equal(facts.num(0.1 + 0.2), '0.3');
});

test('restarts sum the instance views; a LIST answer has none', () => {
  assert.equal(facts.groupRestarts(got), 3);
  assert.equal(facts.groupRestarts(listed), null);
});

test('IP address with its ports; none without an address', () => {
  assert.equal(facts.ipText(got), '10.1.0.4:80/TCP, 53/UDP');
  assert.equal(facts.ipText({properties: {ipAddress: {ports: [{port: 80}]}}}), facts.NONE);
  assert.equal(facts.ipText({properties: {ipAddress: {ip: '10.0.0.9'}}}), '10.0.0.9');
  assert.equal(facts.fqdnText(got), 'web.example');
  assert.equal(facts.fqdnText({properties: {}}), facts.NONE);
});

test('findContainer looks in init containers too', () => {
  assert.equal(facts.findContainer(got, 'init').name, 'init');
  assert.equal(facts.findContainer(got, 'nope'), null);
  assert.deepEqual(facts.imagesOf(got), ['img/a', 'img/b', 'img/init']);
});

test('withoutSecrets drops secret keys at any depth and leaves the input alone', () => {
  const input = {a: [{name: 'x', secureValue: 's', value: 'v'}], properties: {secureEnvironmentVariables: {k: 1}, keep: 1}};
  assert.deepEqual(facts.withoutSecrets(input), {a: [{name: 'x', value: 'v'}], properties: {keep: 1}});
  assert.equal(input.a[0].secureValue, 's');
});

test('the filter matches name, resource group, status, image and FQDN, any case', () => {
  const row = {name: 'Web', rg: 'Prod', status: 'Running', fqdn: 'web.example', images: ['nginx:1']};
  for (const text of ['web', 'PROD', 'runn', 'NGINX', 'example', '  ']) assert.ok(facts.matches(row, text), text);
  assert.ok(!facts.matches(row, 'stopped'));
});

test('when: a timestamp in the locale, the text itself if it does not parse', () => {
  assert.equal(facts.when(undefined), facts.NONE);
  assert.equal(facts.when('not a time'), 'not a time');
  assert.notEqual(facts.when('2026-01-02T03:04:05Z'), facts.NONE);
});
