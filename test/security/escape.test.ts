import assert from 'node:assert/strict';
import { test } from 'node:test';
import { escapeControl, jsonTerminalSafe, terminalSafe } from '../../src/cli/escape.js';
import { renderReport } from '../../src/commands/verify.js';
import type { VerificationReport } from '../../src/verify/index.js';
import { sphana } from '../helpers/cli.js';
import { fixture } from '../helpers/paths.js';

/** Issue 10, item 10: control characters are escaped in every human-readable output. */
const OSC52 = '\u001b]52;c;c3BoYW5hLXB3bmVk\u0007';
const CONTROL = `${OSC52}\u001b[2J\r\nfake line\u007f\u009b31m\u202e`;
// Anything a terminal acts on, except the newline that ends each line.
const RAW_CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

test('escapeControl makes every control character visible and keeps the rest', () => {
  assert.equal(escapeControl(OSC52), '\\x1b]52;c;c3BoYW5hLXB3bmVk\\x07');
  assert.equal(escapeControl(CONTROL), '\\x1b]52;c;c3BoYW5hLXB3bmVk\\x07\\x1b[2J\\r\\nfake line\\x7f\\x9b31m\\u202e');
  assert.equal(escapeControl('plain – ünïcödé ×3'), 'plain – ünïcödé ×3');
  assert.equal(terminalSafe('\u001b[31mred\u001b[39m\n\u001b]0;t\u0007', { keepNewlines: true, keepColour: true }), '\u001b[31mred\u001b[39m\n\\x1b]0;t\\x07');
  const json = JSON.stringify({ s: CONTROL });
  assert.doesNotMatch(jsonTerminalSafe(json), RAW_CONTROL);
  assert.deepEqual(JSON.parse(jsonTerminalSafe(json)), { s: CONTROL });
});

test('inspect: model strings with OSC 52, CSI, CR/LF, DEL, C1 and RLO reach the terminal escaped', () => {
  const r = sphana(['inspect', fixture('hostile/control_chars/model.onnx')]);
  assert.equal(r.exitCode, 3); // its external data is missing
  for (const [name, text] of [['stdout', r.stdout], ['stderr', r.stderr]]) {
    assert.doesNotMatch(text, RAW_CONTROL, `${name} carries a raw control character`);
  }
  assert.match(r.stdout, /^ {2}x\\x1b\]52;c;c3BoYW5hLXB3bmVk\\x07 +float32\[batch\\x1b\]52;c;c3BoYW5hLXB3bmVk\\x07,4\]$/m);
  assert.match(r.stdout, /^ {2}k\\x1b\]52;c;c3BoYW5hLXB3bmVk\\x07 = v\\x1b\]52.*\\r\\nfake line\\x7f\\x9b31m\\u202e$/m);
  assert.doesNotMatch(r.stdout, /^fake line/m); // the CR LF did not start a line of its own
  assert.match(r.stderr, /E_EXTERNAL_DATA_MISSING: 'w\\x1b\]52;c;c3BoYW5hLXB3bmVk\\x07\.bin' not found/);
});

test('inspect --json: exact JSON (the same strings after parsing), no raw control byte', () => {
  const r = sphana(['inspect', '--json', fixture('hostile/control_chars/model.onnx')]);
  assert.equal(r.exitCode, 3);
  assert.doesNotMatch(r.stdout, RAW_CONTROL);
  const s = JSON.parse(r.stdout) as { metadata: Record<string, string>; inputs: Array<{ name: string }>; producer: { name: string } };
  assert.deepEqual(s.metadata, { [`k${OSC52}`]: `v${CONTROL}` });
  assert.equal(s.inputs[0].name, `x${OSC52}`);
  assert.equal(s.producer.name, `evil${OSC52}`);
});

test('error messages that quote untrusted strings are escaped', () => {
  const r = sphana(['inspect', `missing${OSC52}.onnx`]);
  assert.equal(r.exitCode, 3);
  assert.doesNotMatch(r.stderr, RAW_CONTROL);
  assert.match(r.stderr, /E_FILE_NOT_FOUND: missing\\x1b\]52;c;c3BoYW5hLXB3bmVk\\x07\.onnx: no such file/);
});

test("verify's table escapes names and messages from the manifest", () => {
  const report = {
    name: `model${OSC52}`, dir: '/tmp/a', ok: false, failed: [`files${OSC52}`], promptIds: 'tokenizer',
    thresholds: { int8: { top1: 0.97, cosine: 0.98, kl: 0.05, nearTieNats: 0.5 } }, quality: {}, tokens: 8, threads: 2, seconds: 1,
    checks: [{ name: `files${OSC52}`, status: 'failed', seconds: 0.1, message: `missing ${CONTROL}; more`, figures: {} }],
  } as unknown as VerificationReport;
  const text = renderReport(report);
  assert.doesNotMatch(text.replace(/\u001b\[[0-9;]*m/g, ''), RAW_CONTROL);
  assert.match(text, /^model\\x1b\]52;c;c3BoYW5hLXB3bmVk\\x07 /);
  assert.match(text, /missing \\x1b\]52;c;c3BoYW5hLXB3bmVk\\x07\\x1b\[2J\\r\\nfake line/);
});
