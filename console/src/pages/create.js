// Create a container group: a short form (the body `berth container create` builds from its flags)
// or an ACI YAML/JSON file (parsed by the server, POST /console/v1/manifests, as `--file` is). An
// API error with a `target` is shown next to the field it names.
import {h, field, replace, alertBox} from '../dom.js';
import {ApiError, PROVIDER, get, groupPath, post, put, session} from '../api.js';
import {go, link} from '../router.js';
import {FIELDS, FieldError, RESTART_POLICIES, buildGroup, fieldOfTarget, formatOf} from './create_spec.js';

/** The location groups are created in: the one the provider serves containerGroups in. */
async function serviceLocation(sub) {
  const provider = await get(`/subscriptions/${encodeURIComponent(sub)}/providers/${PROVIDER}`);
  const types = (provider && provider.resourceTypes) || [];
  const groups = types.find((t) => t.resourceType === 'containerGroups');
  return (groups && groups.locations && groups.locations[0]) || 'local';
}

/** A labelled control with a slot for its error, next to it. */
function errorField(label, control, hint) {
  const slot = h('div', {class: 'field-error', id: `${label.replace(/\W+/g, '-').toLowerCase()}-${Math.random().toString(36).slice(2, 8)}-error`});
  const {wrap} = field(label, control, hint);
  wrap.append(slot);
  return {
    wrap, control,
    show(message) {
      replace(slot, alertBox(message));
      control.setAttribute('aria-invalid', 'true');
      control.setAttribute('aria-describedby', slot.id);
    },
    clear() {
      replace(slot);
      control.removeAttribute('aria-invalid');
      control.removeAttribute('aria-describedby');
    },
  };
}

function subscriptionControl() {
  const subs = (session.me && session.me.subscriptions) || [];
  if (subs.length === 0) return h('input', {type: 'text', required: true, spellcheck: 'false'});
  return h('select', {}, subs.map((s) => h('option', {value: s}, s)));
}

function formPanel() {
  const text = (value = '', props = {}) => h('input', {type: 'text', spellcheck: 'false', value, ...props});
  const fields = {
    resourceGroup: errorField(FIELDS.resourceGroup, text('', {required: true})),
    name: errorField(FIELDS.name, text('', {required: true}), 'Lower-case letters, digits and hyphens; the container is named the same.'),
    image: errorField(FIELDS.image, text('', {required: true, placeholder: 'nginx:1.27'})),
    cpu: errorField(FIELDS.cpu, h('input', {type: 'number', min: '0.1', step: 'any', value: '1'})),
    memory: errorField(FIELDS.memory, h('input', {type: 'number', min: '0.1', step: 'any', value: '1.5'})),
    ports: errorField(FIELDS.ports, text('80'), 'Comma separated, TCP.'),
    dnsNameLabel: errorField(FIELDS.dnsNameLabel, text(), 'Gives the group a public IP address with this DNS name.'),
    command: errorField(FIELDS.command, text(), 'Instead of the image\'s; split like a shell: sh -c \'echo hi\'.'),
    env: errorField(FIELDS.env, h('textarea', {rows: '4', spellcheck: 'false'}), 'KEY=VALUE, one a line.'),
    restartPolicy: errorField(FIELDS.restartPolicy, h('select', {}, RESTART_POLICIES.map((p) => h('option', {value: p}, p)))),
  };
  const panel = h('div', {role: 'tabpanel', class: 'create-panel', 'aria-label': 'Form'},
    Object.values(fields).map((f) => f.wrap));
  return {
    panel, fields,
    values() {
      return Object.fromEntries(Object.entries(fields).map(([key, f]) => [key, f.control.value]));
    },
  };
}

function filePanel() {
  const text = h('textarea', {rows: '16', spellcheck: 'false', class: 'manifest',
    placeholder: 'apiVersion: \'2023-05-01\'\nname: web\nproperties:\n  containers: …'});
  let fileName = null;
  text.addEventListener('input', () => { fileName = null; });
  const textField = errorField('YAML or JSON', text);
  const upload = h('input', {type: 'file', accept: '.yaml,.yml,.json,application/json,text/yaml'});
  const uploadField = errorField('Upload file', upload);
  upload.addEventListener('change', async () => {
    const file = upload.files && upload.files[0];
    if (!file) return;
    try {
      text.value = await file.text();
      fileName = file.name;
      uploadField.clear();
    } catch (e) {
      uploadField.show(`Could not read ${file.name}: ${e.message}`);
    }
  });
  const rg = errorField('Resource group', h('input', {type: 'text', required: true, spellcheck: 'false'}));
  const panel = h('div', {role: 'tabpanel', class: 'create-panel', 'aria-label': 'File'},
    textField.wrap, uploadField.wrap, rg.wrap);
  return {panel, fields: {text: textField, upload: uploadField, resourceGroup: rg}, fileName: () => fileName};
}

export function render(main) {
  const control = subscriptionControl();
  const subscription = errorField(FIELDS.subscription, control,
    control.tagName === 'INPUT' ? 'Your token names no subscription (an operator\'s): the ID of the one to create in.' : null);
  const form = formPanel();
  const file = filePanel();
  const panels = h('div', {});
  const general = h('div', {class: 'create-error'});
  const button = h('button', {type: 'submit', class: 'primary'}, 'Create');
  const tabs = {Form: form, File: file};
  let mode = 'Form';
  let gone = false;
  const aborter = new AbortController();

  const names = Object.keys(tabs);
  const tabButtons = names.map((name) => h('button', {
    type: 'button', role: 'tab', 'aria-selected': String(name === mode),
    onclick: () => select(name),
    onkeydown: (event) => {
      // The ARIA tabs pattern: arrows move between tabs.
      const step = {ArrowRight: 1, ArrowLeft: -1}[event.key];
      if (!step) return;
      event.preventDefault();
      const next = names[(names.indexOf(name) + step + names.length) % names.length];
      select(next);
      tabButtons[names.indexOf(next)].focus();
    },
  }, name));
  function select(name) {
    mode = name;
    tabButtons.forEach((b) => {
      const selected = b.textContent === name;
      b.setAttribute('aria-selected', String(selected));
      b.tabIndex = selected ? 0 : -1;
    });
    replace(panels, tabs[name].panel);
  }

  function clearErrors() {
    replace(general);
    subscription.clear();
    for (const f of [...Object.values(form.fields), ...Object.values(file.fields)]) f.clear();
  }

  function showGeneral(message) {
    replace(general, alertBox(message));
  }

  /** An API error next to the field it names; `fallback` takes the ones no field of the form names. */
  function showApiError(e, fields, fallback) {
    if (!(e instanceof ApiError)) {
      showGeneral(`The request failed: ${e.message}`);
      return;
    }
    const key = fieldOfTarget(e.target);
    if (key === 'resourceGroup' || (key && mode === 'Form' && fields[key])) {
      fields[key].show(e.message);
    } else if (e.target && e.target.startsWith('subscription')) {
      subscription.show(e.message);
    } else {
      fallback(e.target ? `${e.target}: ${e.message}` : e.message);
    }
  }

  async function createFromForm(sub) {
    let body;
    try {
      body = buildGroup(form.values(), await serviceLocation(sub));
    } catch (e) {
      if (e instanceof FieldError) { form.fields[e.field].show(e.message); return; }
      throw e;
    }
    const values = form.values();
    const rg = values.resourceGroup.trim();
    const name = values.name.trim();
    await put(groupPath(sub, rg, name), body, {signal: aborter.signal});
    if (!gone) go(link('groups', sub, rg, name));
  }

  async function createFromFile(sub) {
    const text = file.fields.text.control.value;
    const rg = file.fields.resourceGroup.control.value.trim();
    let ok = true;
    if (text.trim() === '') { file.fields.text.show('Paste a YAML or JSON file, or upload one.'); ok = false; }
    if (rg === '') { file.fields.resourceGroup.show('Resource group is required'); ok = false; }
    if (!ok) return;
    let manifest;
    try {
      manifest = await post('/console/v1/manifests', {text, format: formatOf(text, file.fileName())}, {signal: aborter.signal});
    } catch (e) {
      if (e instanceof ApiError) {
        file.fields.text.show(e.target ? `${e.target}: ${e.message}` : e.message);
        return;
      }
      throw e;
    }
    const path = `${groupPath(sub, rg, manifest.name)}?api-version=${encodeURIComponent(manifest.apiVersion)}`;
    await put(path, manifest.body, {signal: aborter.signal});
    if (!gone) go(link('groups', sub, rg, manifest.name));
  }

  async function submit(event) {
    event.preventDefault();
    clearErrors();
    const sub = subscription.control.value.trim();
    if (sub === '') { subscription.show('Subscription is required'); return; }
    button.disabled = true;
    try {
      if (mode === 'Form') await createFromForm(sub); else await createFromFile(sub);
    } catch (e) {
      if (gone || (e && e.name === 'AbortError')) return;
      const fields = mode === 'Form' ? form.fields : file.fields;
      const fallback = mode === 'Form' ? showGeneral : (m) => file.fields.text.show(m);
      showApiError(e, fields, fallback);
    } finally {
      button.disabled = false;
    }
  }

  select(mode);
  main.append(
    h('h1', {}, 'Create a container group'),
    h('form', {class: 'create', onsubmit: submit, novalidate: true},
      subscription.wrap,
      h('div', {role: 'tablist', 'aria-label': 'Create from'}, tabButtons),
      panels,
      general,
      h('div', {class: 'toolbar'}, button)));
  return () => { gone = true; aborter.abort(); };
}
