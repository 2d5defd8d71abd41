// Billing: month to date for the caller (the tenant usage route, per subscription; operators read
// every subscription's from the admin export), and for operators the export as a CSV download.
// Query and columns: apiserver/src/http/billing.rs and apiserver/src/billing/export.rs.
import {h, field, replace, alertBox} from '../dom.js';
import {ApiError, PROVIDER, request, session} from '../api.js';

/** Up to 6 decimals, without trailing zeros. */
function num(value) {
  const n = Number(value);
  return Number.isFinite(n) ? String(Number(n.toFixed(6))) : String(value ?? '');
}

/** JSON lines → objects (a blank last line is skipped). */
function parseLines(text) {
  return text.split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l));
}

async function fetchLines(path, signal) {
  const response = await request('GET', path, undefined, {raw: true, signal});
  return parseLines(await response.text());
}

/** This month's rows, rolled up by month: the operator's of every subscription, a tenant's of each. */
async function monthToDate(signal) {
  const query = 'granularity=monthly&format=jsonl';
  if (session.me && session.me.operator) return fetchLines(`/admin/billing/usage?${query}`, signal);
  const subs = (session.me && session.me.subscriptions) || [];
  const parts = await Promise.all(subs.map((sub) =>
    fetchLines(`/subscriptions/${encodeURIComponent(sub)}/providers/${PROVIDER}/usage?${query}`, signal)));
  return parts.flat();
}

function monthTable(rows) {
  const head = ['Subscription', 'Resource group', 'Container group', 'Meter', 'Quantity', 'Cost'];
  const totals = new Map();
  for (const r of rows) {
    const currency = r.BillingCurrency || '';
    totals.set(currency, (totals.get(currency) || 0) + Number(r.BilledCost || 0));
  }
  const sorted = [...rows].sort((a, b) =>
    `${a.SubAccountId}/${a.x_ResourceGroup}/${a.ResourceName}/${a.ChargeDescription}`.localeCompare(
      `${b.SubAccountId}/${b.x_ResourceGroup}/${b.ResourceName}/${b.ChargeDescription}`));
  return h('table', {'aria-label': 'Month to date'},
    h('thead', {}, h('tr', {}, head.map((t) => h('th', {scope: 'col'}, t)))),
    h('tbody', {}, sorted.length === 0
      ? h('tr', {}, h('td', {colspan: String(head.length)}, 'No usage this month'))
      : sorted.map((r) => h('tr', {},
        h('td', {}, r.SubAccountId),
        h('td', {}, r.x_ResourceGroup),
        h('td', {}, r.ResourceName),
        h('td', {}, r.ChargeDescription || r.SkuId),
        h('td', {class: 'num'}, `${num(r.ConsumedQuantity)} ${r.ConsumedUnit || ''}`.trim()),
        h('td', {class: 'num'}, `${num(r.BilledCost)} ${r.BillingCurrency || ''}`.trim())))),
    totals.size === 0 ? null : h('tfoot', {}, [...totals].map(([currency, total]) => h('tr', {},
      h('th', {scope: 'row', colspan: String(head.length - 1)}, 'Total'),
      h('td', {class: 'num'}, `${num(total)} ${currency}`.trim())))));
}

/** YYYY-MM-DD of a Date, in UTC (the export's days are UTC days). */
function day(date) {
  return date.toISOString().slice(0, 10);
}

function exportSection(signal) {
  const now = new Date();
  const from = h('input', {type: 'date', value: day(new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1)))});
  const to = h('input', {type: 'date', value: day(now)});
  const granularity = h('select', {}, ['raw', 'hourly', 'daily', 'monthly'].map((g) =>
    h('option', {value: g, selected: g === 'daily'}, g)));
  const fields = {
    from: field('From', from, 'UTC day, included.'),
    to: field('To', to, 'UTC day, included.'),
    granularity: field('Granularity', granularity),
  };
  const slots = Object.fromEntries(Object.entries(fields).map(([k, f]) => {
    const slot = h('div', {class: 'field-error'});
    f.wrap.append(slot);
    return [k, slot];
  }));
  const general = h('div', {});
  const done = h('div', {role: 'status', class: 'muted'});
  const button = h('button', {type: 'submit', class: 'primary'}, 'Download CSV');

  function clear() {
    Object.values(slots).forEach((s) => replace(s));
    replace(general);
    replace(done);
  }

  async function download(event) {
    event.preventDefault();
    clear();
    if (!from.value) { replace(slots.from, alertBox('Choose the first day.')); return; }
    if (!to.value) { replace(slots.to, alertBox('Choose the last day.')); return; }
    // The export's `to` is exclusive: the day after the last one chosen.
    const end = new Date(`${to.value}T00:00:00Z`);
    end.setUTCDate(end.getUTCDate() + 1);
    const query = new URLSearchParams({format: 'csv', granularity: granularity.value, from: from.value, to: day(end)});
    button.disabled = true;
    try {
      const response = await request('GET', `/admin/billing/usage?${query}`, undefined, {raw: true, signal});
      const blob = await response.blob();
      const url = URL.createObjectURL(blob);
      const name = `berth-usage-${from.value}-to-${to.value}-${granularity.value}.csv`;
      const a = h('a', {href: url, download: name, hidden: true});
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
      replace(done, `Downloaded ${name}`);
    } catch (e) {
      if (e && e.name === 'AbortError') return;
      const key = e instanceof ApiError && e.target in slots ? e.target : null;
      replace(key ? slots[key] : general, alertBox(`The export failed: ${e.message}`));
    } finally {
      button.disabled = false;
    }
  }

  return h('section', {'aria-labelledby': 'billing-export'},
    h('h2', {id: 'billing-export'}, 'Export'),
    h('p', {class: 'muted'}, 'Every subscription\'s usage, FOCUS columns, as CSV.'),
    h('form', {class: 'billing-export', onsubmit: download, novalidate: true},
      h('div', {class: 'field-row'}, Object.values(fields).map((f) => f.wrap)),
      general,
      h('div', {class: 'toolbar'}, button, done)));
}

export function render(main) {
  const aborter = new AbortController();
  const month = h('div', {'aria-busy': 'true'}, h('p', {class: 'muted'}, 'Loading…'));
  main.append(
    h('h1', {}, 'Billing'),
    h('section', {'aria-labelledby': 'billing-month'},
      h('h2', {id: 'billing-month'}, 'Month to date'),
      month),
    session.me && session.me.operator ? exportSection(aborter.signal) : null);
  monthToDate(aborter.signal).then((rows) => {
    month.removeAttribute('aria-busy');
    replace(month, monthTable(rows));
  }).catch((e) => {
    if (e && e.name === 'AbortError') return;
    month.removeAttribute('aria-busy');
    replace(month, alertBox(`The usage could not be read: ${e.message}`));
  });
  return () => aborter.abort();
}
