// Unit tests of pages/create_spec.js: `node --experimental-detect-module --test console/test/`
// (Node 20 needs the flag to load console/src's ES modules, which have no package.json "type").
import {test} from 'node:test';
import assert from 'node:assert/strict';
import {buildGroup, fieldOfTarget, formatOf, parseEnv, parsePorts, splitCommand, FieldError} from '../src/pages/create_spec.js';

const form = (over = {}) => ({
  resourceGroup: 'rg', name: 'web', image: 'nginx:1.27', cpu: '1', memory: '1.5', ports: '80',
  dnsNameLabel: '', command: '', env: '', restartPolicy: 'Always', ...over,
});

test('command lines split as cli/src/cmdline.rs splits them', () => {
  assert.deepEqual(splitCommand(`/bin/sh -c 'echo hi; sleep 1'`), ['/bin/sh', '-c', 'echo hi; sleep 1']);
  assert.deepEqual(splitCommand(`a "b \\"c\\" \\d" '' e\\ f`), ['a', 'b "c" \\d', '', 'e f']);
  assert.deepEqual(splitCommand('  '), []);
  assert.throws(() => splitCommand(`echo 'oops`), /unterminated ' quote/);
  assert.throws(() => splitCommand('echo \\'), /lone backslash/);
});

test('the default form builds the body berth container create PUTs', () => {
  assert.deepEqual(buildGroup(form(), 'local'), {
    location: 'local',
    properties: {
      containers: [{name: 'web', properties: {
        image: 'nginx:1.27', ports: [{port: 80, protocol: 'TCP'}],
        resources: {requests: {cpu: 1, memoryInGB: 1.5}},
      }}],
      restartPolicy: 'Always',
      osType: 'Linux',
    },
  });
});

test('a DNS label gives a public IP with the ports; command and env go on the container', () => {
  const body = buildGroup(form({ports: '80, 443', dnsNameLabel: 'web1', command: `sh -c 'echo hi'`,
    env: 'A=1\n\nB=x=y\nC=', restartPolicy: 'Never'}), 'westus');
  const ports = [{port: 80, protocol: 'TCP'}, {port: 443, protocol: 'TCP'}];
  assert.deepEqual(body.properties.ipAddress, {ports, type: 'Public', dnsNameLabel: 'web1'});
  const c = body.properties.containers[0].properties;
  assert.deepEqual(c.command, ['sh', '-c', 'echo hi']);
  assert.deepEqual(c.environmentVariables, [{name: 'A', value: '1'}, {name: 'B', value: 'x=y'}, {name: 'C', value: ''}]);
  assert.equal(body.properties.restartPolicy, 'Never');
});

test('values the CLI refuses are refused, naming the field', () => {
  const field = (over) => {
    try { buildGroup(form(over), 'local'); } catch (e) { assert.ok(e instanceof FieldError); return e.field; }
    return null;
  };
  assert.equal(field({image: ' '}), 'image');
  assert.equal(field({name: ''}), 'name');
  assert.equal(field({resourceGroup: ''}), 'resourceGroup');
  assert.equal(field({cpu: '0'}), 'cpu');
  assert.equal(field({memory: 'lots'}), 'memory');
  assert.equal(field({ports: '80,70000'}), 'ports');
  assert.equal(field({command: `echo "x`}), 'command');
  assert.equal(field({env: 'NOEQUALS'}), 'env');
  assert.equal(field({restartPolicy: 'Sometimes'}), 'restartPolicy');
  assert.deepEqual(parsePorts(''), []);
  assert.deepEqual(parseEnv('\n  \n'), []);
  assert.equal(field({env: '=x'}), 'env', 'an empty key');
});

test('API error targets name the field by JSON path prefix', () => {
  assert.equal(fieldOfTarget('properties.containers[0].properties.image'), 'image');
  assert.equal(fieldOfTarget('properties.containers[0].properties.resources.requests.memoryInGB'), 'memory');
  assert.equal(fieldOfTarget('properties.containers[0].properties.resources.requests.cpu'), 'cpu');
  assert.equal(fieldOfTarget('properties.containers[0].properties.ports[1].port'), 'ports');
  assert.equal(fieldOfTarget('properties.containers[0].properties.environmentVariables[2].name'), 'env');
  assert.equal(fieldOfTarget('properties.ipAddress.dnsNameLabel'), 'dnsNameLabel');
  assert.equal(fieldOfTarget('containerGroupName'), 'name');
  assert.equal(fieldOfTarget('resourceGroupName'), 'resourceGroup');
  assert.equal(fieldOfTarget('names'), null, 'a prefix ends at a path separator');
  assert.equal(fieldOfTarget('location'), null);
  assert.equal(fieldOfTarget(undefined), null);
});

test('file format: by file name, else by the first character', () => {
  assert.equal(formatOf('name: x', 'g.JSON'), 'json');
  assert.equal(formatOf('{"name": 1}', 'g.yaml'), 'yaml');
  assert.equal(formatOf('  {"name": "x"}'), 'json');
  assert.equal(formatOf('name: x'), 'yaml');
});
