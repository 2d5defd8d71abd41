// A shell in a container: an xterm.js terminal over Berth's exec channel protocol. `POST …/exec`
// gives a single-use websocket URL and password; the password travels only as the websocket's
// bearer subprotocol and is never shown, stored or logged.
import {h, replace, field} from '../dom.js';
import {post, groupPath} from '../api.js';
import * as channel from '../channel.js';

const SHELLS = ['/bin/sh', '/bin/bash'];
const CUSTOM = 'Custom';

/** Renders the Connect sub-tab into `el` for {sub, rg, name, container}; returns a cleanup. */
export function render(el, {sub, rg, name, container}) {
  const path = `${groupPath(sub, rg, name)}/containers/${encodeURIComponent(container)}/exec`;
  const shell = h('select', {onchange: () => { custom.disabled = shell.value !== CUSTOM; }},
    [...SHELLS, CUSTOM].map((s) => h('option', {value: s}, s)));
  const custom = h('input', {type: 'text', disabled: true, spellcheck: 'false', autocomplete: 'off',
    placeholder: 'e.g. /bin/sh -c "ls /"',
    onkeydown: (event) => { if (event.key === 'Enter' && !session) start(); }});
  const connect = h('button', {type: 'button', class: 'primary', onclick: () => start()}, 'Connect');
  const disconnect = h('button', {type: 'button', hidden: true, onclick: () => stop()}, 'Disconnect');
  const status = h('div', {role: 'status'});
  const problem = h('div', {class: 'error-slot'});
  const screen = h('div', {class: 'terminal', 'aria-label': 'Terminal', hidden: true});
  replace(el,
    h('div', {class: 'toolbar fields'},
      field('Shell', shell).wrap, field('Custom command', custom).wrap, connect, disconnect),
    status,
    problem,
    screen);

  // The session in progress, if any: {socket, term, fit, ended}.
  let session = null;
  let term = null;

  function onWindowResize() {
    if (session && session.fit) session.fit.fit();
  }
  window.addEventListener('resize', onWindowResize);

  /** The command to run, as the exec API takes it, or null (with the reason shown). */
  function command() {
    if (shell.value !== CUSTOM) return shell.value;
    const argv = channel.splitCommand(custom.value.trim());
    if (!argv || argv.length === 0 || !argv[0]) {
      replace(problem, h('div', {role: 'alert', class: 'error'},
        argv ? 'Enter a command to run.' : 'The command line does not parse: a quote is not closed, or it ends with a lone backslash.'));
      custom.focus();
      return null;
    }
    return argv;
  }

  function idle() {
    connect.hidden = false;
    connect.disabled = false;
    disconnect.hidden = true;
    shell.disabled = false;
    custom.disabled = shell.value !== CUSTOM;
  }

  function freshTerminal() {
    if (term) term.dispose();
    replace(screen);
    screen.hidden = false;
    term = new window.Terminal({cursorBlink: true, scrollback: 5000, fontSize: 14,
      fontFamily: 'ui-monospace, "Cascadia Mono", "DejaVu Sans Mono", monospace'});
    const fit = new window.FitAddon.FitAddon();
    term.loadAddon(fit);
    term.open(screen);
    fit.fit();
    return {term, fit};
  }

  async function start() {
    const cmd = command();
    if (cmd === null) return;
    replace(problem);
    replace(status, 'Connecting…');
    connect.disabled = true;
    shell.disabled = true;
    custom.disabled = true;
    const {term: t, fit} = freshTerminal();
    const current = {socket: null, fit, ended: false, outcome: null};
    session = current;
    let answer;
    try {
      answer = await post(path, {command: cmd, terminalSize: {rows: t.rows, cols: t.cols}});
    } catch (error) {
      if (session !== current) return;
      session = null;
      replace(status);
      replace(problem, h('div', {role: 'alert', class: 'error'}, error.message || String(error)));
      idle();
      return;
    }
    if (session !== current) return;
    const socket = new WebSocket(answer.webSocketUri, channel.protocols(answer.password));
    answer = null;
    socket.binaryType = 'arraybuffer';
    current.socket = socket;
    const send = (bytes) => { if (socket.readyState === WebSocket.OPEN) socket.send(bytes); };
    const typed = t.onData((data) => send(channel.frame(channel.STDIN, data)));
    const binary = t.onBinary((data) =>
      send(channel.frame(channel.STDIN, Uint8Array.from(data, (c) => c.charCodeAt(0) & 0xff))));
    const resized = t.onResize(({cols, rows}) => send(channel.resizeFrame(cols, rows)));
    const decoder = new TextDecoder();

    socket.onopen = () => {
      if (session !== current) return;
      replace(status, `Connected to ${container}`);
      connect.hidden = true;
      disconnect.hidden = false;
      fit.fit();
      send(channel.resizeFrame(t.cols, t.rows));
      t.focus();
    };
    socket.onmessage = (event) => {
      const message = channel.parseFrame(event.data);
      if (!message) return;
      if (message.channel === channel.STDOUT || message.channel === channel.STDERR) {
        t.write(message.data);
      } else if (message.channel === channel.STATUS) {
        current.outcome = channel.outcome(decoder.decode(message.data));
      }
    };
    socket.onclose = (event) => {
      typed.dispose();
      binary.dispose();
      resized.dispose();
      t.options.disableStdin = true;
      t.options.cursorBlink = false;
      if (session !== current) return;
      session = null;
      const end = current.outcome;
      if (end && 'exitCode' in end) {
        replace(status, `Exited with code ${end.exitCode}`);
      } else if (end) {
        replace(status, 'The command did not run');
        replace(problem, h('div', {role: 'alert', class: 'error'}, end.failed));
      } else if (current.ended) {
        replace(status, 'Disconnected');
      } else {
        replace(status, 'Disconnected');
        replace(problem, h('div', {role: 'alert', class: 'error'},
          event.reason || `The connection closed before the command ended (code ${event.code}).`));
      }
      idle();
      connect.focus();
    };
  }

  /** Disconnect: closing the socket makes the server end the command. */
  function stop() {
    if (!session) return;
    session.ended = true;
    if (session.socket) session.socket.close(1000);
  }

  return () => {
    window.removeEventListener('resize', onWindowResize);
    const s = session;
    session = null;
    if (s && s.socket) s.socket.close(1000);
    if (term) term.dispose();
    term = null;
  };
}
