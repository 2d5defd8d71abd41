// The exec channel protocol's pure helpers (console/src/channel.js), against what
// proto/src/exec.rs writes and reads. Run: node --test console/test/
import {test} from 'node:test';
import assert from 'node:assert/strict';
import * as c from '../src/channel.js';

const failed = (code) => `{"details":{"causes":[{"message":"${code}","reason":"ExitCode"}]},"message":"command terminated with non-zero exit code: ${code}","metadata":{},"reason":"NonZeroExitCode","status":"Failure"}`;

test('statuses become exit codes as berth_proto::exec::Status::outcome reads them', () => {
  assert.deepEqual(c.outcome('{"metadata":{},"status":"Success"}'), {exitCode: 0});
  assert.deepEqual(c.outcome(failed('7')), {exitCode: 7});
  assert.deepEqual(c.outcome(failed('255')), {exitCode: 255});
  assert.deepEqual(c.outcome(failed('0')), {exitCode: 1});
  assert.deepEqual(c.outcome(failed('256')), {exitCode: 1});
  assert.deepEqual(c.outcome(failed('x')), {failed: 'command terminated with non-zero exit code: x'});
  assert.deepEqual(
    c.outcome('{"message":"no such executable: nope","metadata":{},"reason":"InternalError","status":"Failure"}'),
    {failed: 'no such executable: nope'});
  assert.deepEqual(c.outcome('{"status":"Failure","reason":"InternalError"}'), {failed: 'InternalError'});
  assert.deepEqual(c.outcome('{}'), {failed: 'the command failed and the server did not say why'});
  assert.ok(c.outcome('not json').failed);
  assert.ok(c.outcome('null').failed);
});

test('frames carry their channel first', () => {
  assert.deepEqual([...c.frame(c.STDIN, 'hi\n')], [0, 104, 105, 10]);
  assert.deepEqual([...c.frame(c.STDIN, new Uint8Array([255]))], [0, 255]);
  assert.equal(new TextDecoder().decode(c.resizeFrame(80, 24)), '\x04{"Width":80,"Height":24}');
  assert.deepEqual(c.parseFrame(new Uint8Array([1, 65]).buffer), {channel: 1, data: new Uint8Array([65])});
  assert.deepEqual(c.parseFrame(new Uint8Array([3]).buffer), {channel: 3, data: new Uint8Array([])});
  assert.equal(c.parseFrame(new ArrayBuffer(0)), null);
});

test('the password goes as an unpadded base64url bearer subprotocol', () => {
  for (const s of ['x', 'xy', 'xyz', 'a?b>~', 'pässwörd/+']) {
    assert.equal(c.base64url(s), Buffer.from(s).toString('base64url'));
  }
  assert.deepEqual(c.protocols('xy'), ['v5.channel.k8s.io', 'base64url.bearer.authorization.k8s.io.eHk']);
});

test('custom commands split like a shell for simple quoting', () => {
  assert.deepEqual(c.splitCommand('/bin/sh -c "echo a  b; exit 0"'), ['/bin/sh', '-c', 'echo a  b; exit 0']);
  assert.deepEqual(c.splitCommand("sh -c 'echo \"q\"'  x"), ['sh', '-c', 'echo "q"', 'x']);
  assert.deepEqual(c.splitCommand('a\\ b "" c'), ['a b', '', 'c']);
  assert.deepEqual(c.splitCommand('"a\\"b"'), ['a"b']);
  assert.deepEqual(c.splitCommand('   '), []);
  assert.equal(c.splitCommand('"open'), null);
  assert.equal(c.splitCommand("'open"), null);
});
