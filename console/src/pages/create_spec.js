// The pure part of the Create page: the ARM body the form describes, built as `berth container
// create` builds it from flags (cli/src/group_spec.rs `GroupFlags::build`), and which form field an
// API error's `target` names. No DOM here, so it is tested with `node --test` (console/test/).
import {splitCommand} from '../cmdline.js';

/** A form value that is not right, for the field `field` (a key of FIELDS). */
export class FieldError extends Error {
  constructor(field, message) {
    super(message);
    this.field = field;
  }
}

/** The Form mode's fields: key → visible label (the label is also the accessible name). */
export const FIELDS = {
  subscription: 'Subscription',
  resourceGroup: 'Resource group',
  name: 'Name',
  image: 'Image',
  cpu: 'CPU cores',
  memory: 'Memory (GB)',
  ports: 'Ports',
  dnsNameLabel: 'DNS name label',
  command: 'Command',
  env: 'Environment variables',
  restartPolicy: 'Restart policy',
};

export const RESTART_POLICIES = ['Always', 'OnFailure', 'Never'];

export {splitCommand};

/** "80, 443" → [80, 443]; each a whole number from 1 to 65535. */
export function parsePorts(text) {
  const parts = text.split(',').map((p) => p.trim()).filter((p) => p !== '');
  return parts.map((p) => {
    if (!/^\d+$/.test(p) || Number(p) < 1 || Number(p) > 65535) {
      throw new FieldError('ports', `'${p}' is not a port between 1 and 65535`);
    }
    return Number(p);
  });
}

/** KEY=VALUE per line (blank lines skipped; the value may hold '=' and may be empty). */
export function parseEnv(text) {
  const vars = [];
  text.split(/\r?\n/).forEach((line, i) => {
    if (line.trim() === '') return;
    const eq = line.indexOf('=');
    if (eq <= 0) throw new FieldError('env', `line ${i + 1}: expected KEY=VALUE, got '${line}'`);
    vars.push({name: line.slice(0, eq), value: line.slice(eq + 1)});
  });
  return vars;
}

function positive(field, text) {
  const value = Number(text);
  if (text.trim() === '' || !Number.isFinite(value) || value <= 0) {
    throw new FieldError(field, `${FIELDS[field]} must be a positive number, not '${text}'`);
  }
  return value;
}

function required(field, text) {
  const value = text.trim();
  if (value === '') throw new FieldError(field, `${FIELDS[field]} is required`);
  return value;
}

/**
 * The PUT body of the form `values` ({resourceGroup, name, image, cpu, memory, ports, dnsNameLabel,
 * command, env, restartPolicy}, all strings), in `location`. One container named like the group,
 * TCP ports on it and, with a DNS name label, a public IP address with those ports; Linux.
 * Throws FieldError for a value the CLI's flags would refuse too.
 */
export function buildGroup(values, location) {
  required('resourceGroup', values.resourceGroup);
  const name = required('name', values.name);
  const image = required('image', values.image);
  const cpu = positive('cpu', values.cpu);
  const memoryInGB = positive('memory', values.memory);
  const ports = parsePorts(values.ports).map((port) => ({port, protocol: 'TCP'}));
  const env = parseEnv(values.env);
  let command;
  if (values.command.trim() !== '') {
    try {
      command = splitCommand(values.command);
    } catch (e) {
      throw new FieldError('command', e.message);
    }
  }
  if (!RESTART_POLICIES.includes(values.restartPolicy)) {
    throw new FieldError('restartPolicy', `${FIELDS.restartPolicy} must be one of ${RESTART_POLICIES.join(', ')}`);
  }
  const dnsNameLabel = values.dnsNameLabel.trim();
  const properties = {
    image,
    ...(command ? {command} : {}),
    ports,
    ...(env.length ? {environmentVariables: env} : {}),
    resources: {requests: {cpu, memoryInGB}},
  };
  return {
    location,
    properties: {
      containers: [{name, properties}],
      restartPolicy: values.restartPolicy,
      ...(dnsNameLabel ? {ipAddress: {ports, type: 'Public', dnsNameLabel}} : {}),
      osType: 'Linux',
    },
  };
}

// An API error's target → the form field it names; the longest matching prefix wins. A JSON path
// matches a prefix when it equals it or goes on with '.' or '['.
const TARGETS = [
  ['resourceGroupName', 'resourceGroup'],
  ['containerGroupName', 'name'],
  ['name', 'name'],
  ['dnsNameLabel', 'dnsNameLabel'],
  ['properties.ipAddress.dnsNameLabel', 'dnsNameLabel'],
  ['properties.ipAddress.ports', 'ports'],
  ['properties.ipAddress', 'dnsNameLabel'],
  ['properties.restartPolicy', 'restartPolicy'],
  ['properties.containers[0].name', 'name'],
  ['properties.containers[0].properties.image', 'image'],
  ['properties.containers[0].properties.command', 'command'],
  ['properties.containers[0].properties.ports', 'ports'],
  ['properties.containers[0].properties.environmentVariables', 'env'],
  ['properties.containers[0].properties.resources.requests.memoryInGB', 'memory'],
  ['properties.containers[0].properties.resources.limits.memoryInGB', 'memory'],
  ['properties.containers[0].properties.resources', 'cpu'],
];

/** The form field (a key of FIELDS) an error target names, or null (shown by the Create button). */
export function fieldOfTarget(target) {
  if (!target) return null;
  let best = null;
  for (const [prefix, field] of TARGETS) {
    const rest = target.slice(prefix.length);
    if (target.startsWith(prefix) && (rest === '' || rest[0] === '.' || rest[0] === '[')) {
      if (!best || prefix.length > best[0].length) best = [prefix, field];
    }
  }
  return best ? best[1] : null;
}

/** "yaml" or "json" for a file: by its name if it has one, else JSON when the text starts with '{'. */
export function formatOf(text, fileName) {
  if (fileName) return /\.json$/i.test(fileName) ? 'json' : 'yaml';
  return text.trimStart().startsWith('{') ? 'json' : 'yaml';
}
