// A container's logs, followed live: `GET …/logs?follow=true` answers streamed text, read chunk by
// chunk and appended as text nodes (a log line is never markup). Download saves what is shown.
import {h, replace} from '../dom.js';
import {ApiError, get, groupPath} from '../api.js';

/** A stream cut by the network (not refused by the API) is opened again this many times in a row. */
const RETRIES = 5;

/** The most text kept on the page; older text is dropped from the top (and from Download). */
const MAX_CHARS = 2 * 1024 * 1024;

/** Renders the Logs sub-tab into `el` for {sub, rg, name, container}; returns a cleanup. */
export function render(el, {sub, rg, name, container}) {
  const path = `${groupPath(sub, rg, name)}/containers/${encodeURIComponent(container)}/logs`;
  const timestamps = h('input', {type: 'checkbox', id: 'logs-timestamps', onchange: () => open()});
  const download = h('button', {type: 'button', onclick: () => save()}, 'Download');
  const output = h('pre', {role: 'log', 'aria-label': 'Logs', class: 'logs', tabindex: '0'});
  const status = h('div', {role: 'status'});
  const problem = h('div', {class: 'error-slot'});
  const reconnect = h('button', {type: 'button', hidden: true, onclick: () => open()}, 'Reconnect');
  replace(el,
    h('div', {class: 'toolbar'},
      h('label', {class: 'check', for: timestamps.id}, timestamps, 'Show timestamps'),
      download, reconnect, status),
    problem,
    output);

  // The chunks shown, in order, each also a text node of `output`.
  let chunks = [];
  let size = 0;
  let controller = null;
  let retries = 0;
  let retryTimer = null;

  function show(text) {
    if (!text) return;
    const atBottom = output.scrollTop + output.clientHeight >= output.scrollHeight - 4;
    const node = document.createTextNode(text);
    output.append(node);
    chunks.push({text, node});
    size += text.length;
    while (size > MAX_CHARS && chunks.length > 1) {
      const old = chunks.shift();
      old.node.remove();
      size -= old.text.length;
    }
    if (atBottom) output.scrollTop = output.scrollHeight;
  }

  function ended(message) {
    replace(status, 'Log stream ended');
    if (message) replace(problem, h('div', {role: 'alert', class: 'error'}, message));
    reconnect.hidden = false;
  }

  /** (Re)opens the stream from the start of the log, with or without timestamps. */
  async function open() {
    clearTimeout(retryTimer);
    if (controller) controller.abort();
    const mine = new AbortController();
    controller = mine;
    chunks = [];
    size = 0;
    replace(output);
    replace(problem);
    replace(status, 'Connecting…');
    reconnect.hidden = true;
    const query = `?follow=true${timestamps.checked ? '&timestamps=true' : ''}`;
    try {
      const response = await get(path + query, {raw: true, signal: mine.signal});
      replace(status, 'Following');
      retries = 0;
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      for (;;) {
        const {done, value} = await reader.read();
        if (done) break;
        show(decoder.decode(value, {stream: true}));
      }
      show(decoder.decode());
      ended();
    } catch (error) {
      if (mine.signal.aborted) return;
      if (!(error instanceof ApiError) && retries < RETRIES) {
        // The network dropped the stream (a laptop changing networks, a proxy restarting): read the
        // log again from the start, as a person pressing Reconnect would.
        retries += 1;
        replace(status, 'Reconnecting…');
        retryTimer = setTimeout(() => { if (controller === null) open(); }, 1000);
        return;
      }
      ended(error.message || String(error));
    } finally {
      if (controller === mine) controller = null;
    }
  }

  function save() {
    const blob = new Blob(chunks.map((c) => c.text), {type: 'text/plain;charset=utf-8'});
    const url = URL.createObjectURL(blob);
    const a = h('a', {href: url, download: `${container}.log`, hidden: true});
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  }

  open();
  return () => {
    clearTimeout(retryTimer);
    if (controller) controller.abort();
    controller = null;
  };
}
