// Berth's exec channel protocol (Kubernetes' v5.channel.k8s.io), as proto/src/exec.rs defines it:
// every websocket frame is binary, its first byte the channel, the rest the payload. Pure functions
// only, so the terminal page stays about the page.
import {splitCommand as words} from './cmdline.js';

/** The subprotocol of the channel framing, and Kubernetes' way to carry a bearer token in one. */
export const PROTOCOL = 'v5.channel.k8s.io';
const BEARER_PROTOCOL = 'base64url.bearer.authorization.k8s.io.';

export const STDIN = 0;
export const STDOUT = 1;
export const STDERR = 2;
export const STATUS = 3;
export const RESIZE = 4;

const encoder = new TextEncoder();

/** The subprotocols a browser offers: the framing, and the session's password (a browser cannot
 * set an Authorization header on a websocket). */
export function protocols(password) {
  return [PROTOCOL, BEARER_PROTOCOL + base64url(password)];
}

/** base64url of a string's UTF-8 bytes, without '=' padding. */
export function base64url(text) {
  let binary = '';
  for (const byte of encoder.encode(text)) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** The frame carrying `payload` (bytes or a string, sent as UTF-8) on `channel`. */
export function frame(channel, payload) {
  const bytes = typeof payload === 'string' ? encoder.encode(payload) : payload;
  const out = new Uint8Array(bytes.length + 1);
  out[0] = channel;
  out.set(bytes, 1);
  return out;
}

/** The frame telling the server the terminal's size. */
export function resizeFrame(cols, rows) {
  return frame(RESIZE, JSON.stringify({Width: cols, Height: rows}));
}

/** A frame from the server: {channel, data} (data a Uint8Array), or null for an empty frame. */
export function parseFrame(buffer) {
  const bytes = new Uint8Array(buffer);
  if (bytes.length === 0) return null;
  return {channel: bytes[0], data: bytes.subarray(1)};
}

/**
 * How the command ended, read from the status frame's JSON as kubectl (and berth) read it:
 * {exitCode: N} or {failed: message}.
 */
export function outcome(statusJson) {
  let status;
  try {
    status = JSON.parse(statusJson);
  } catch {
    return {failed: 'the server sent a status that is not JSON'};
  }
  if (!status || typeof status !== 'object') return {failed: 'the server sent an empty status'};
  if (status.status === 'Success') return {exitCode: 0};
  if (status.reason === 'NonZeroExitCode') {
    const causes = (status.details && Array.isArray(status.details.causes)) ? status.details.causes : [];
    const cause = causes.find((c) => c && c.reason === 'ExitCode');
    const text = cause && typeof cause.message === 'string' ? cause.message.trim() : '';
    if (/^-?\d+$/.test(text)) {
      const code = Number(text);
      // A process that fails exits with 1..255; anything else is still a failure.
      return {exitCode: code >= 1 && code <= 255 ? code : 1};
    }
  }
  return {failed: status.message || status.reason || 'the command failed and the server did not say why'};
}

/** The words of a command line (cmdline.js), or null when it does not parse. */
export function splitCommand(line) {
  try {
    return words(line);
  } catch {
    return null;
  }
}
