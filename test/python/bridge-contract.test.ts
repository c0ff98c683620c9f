/**
 * The contract between the TypeScript request types and the Python bridge: every command's
 * request fields, the fields of its nested objects, and the shared vocabulary with its defaults,
 * read from the real bridge (each command's own key check, see sphana_bridge.cli.accepted_keys).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { ROOT, testPython } from '../helpers/paths.js';
import { REQUEST_FIELDS, fields } from '../../src/python/bridge-requests.js';
import { QUANT_DEFAULTS, SHARED_VOCABULARY } from '../../src/vocabulary.js';

interface BridgeContract {
  commands: Record<string, { keys: string[]; nested: Record<string, string[]> }>;
  vocabulary: Record<string, unknown>;
}

function bridgeContract(): BridgeContract {
  const code = 'import json\nfrom sphana_bridge.cli import accepted_keys\nfrom sphana_bridge.vocabulary import shared_vocabulary\n'
    + 'print(json.dumps({"commands": accepted_keys(), "vocabulary": shared_vocabulary()}))';
  const r = spawnSync(testPython(), ['-c', code], { encoding: 'utf8', env: { ...process.env, PYTHONPATH: join(ROOT, 'python-bridge') }, timeout: 120_000 });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as BridgeContract;
}

const contract = bridgeContract();

test('every bridge command has a typed entry point, and no entry point lacks a command', () => {
  assert.deepEqual(Object.keys(REQUEST_FIELDS).sort(), Object.keys(contract.commands).sort());
  assert.equal(Object.keys(contract.commands).length, 9);
});

test('each request type has exactly the fields its bridge command accepts', () => {
  for (const [command, bridge] of Object.entries(contract.commands)) {
    const ours = REQUEST_FIELDS[command];
    const missing = bridge.keys.filter((k) => !ours.keys.includes(k));
    const extra = ours.keys.filter((k) => !bridge.keys.includes(k));
    assert.deepEqual({ command, missing, extra }, { command, missing: [], extra: [] }, `${command}: the bridge accepts [${bridge.keys.join(', ')}]`);
    assert.deepEqual(ours.nested, bridge.nested, `${command}: nested fields`);
  }
  // The comparison has something to compare: the quantize request is the largest.
  assert.equal(contract.commands.quantize.keys.length, 19); // with int8q's equalize and calibrationIds
  assert.ok(contract.commands.quantize.keys.includes('int8Engine'));
  assert.deepEqual(contract.commands.export.nested.parity, ['atol', 'decodeSteps', 'promptIds', 'rtol']);
});

test('the vocabulary and its defaults are the same on both sides (int8Engine: streaming)', () => {
  assert.deepEqual(contract.vocabulary, JSON.parse(JSON.stringify(SHARED_VOCABULARY)));
  assert.equal((contract.vocabulary.quantDefaults as Record<string, unknown>).int8Engine, 'streaming');
  assert.equal(QUANT_DEFAULTS.int8Engine, 'streaming');
  // the int4 quantizers, rtn-float-zp (float zero points) included, as the bridge validates them
  assert.deepEqual(contract.vocabulary.int4Algorithms, ['rtn', 'rtn-float-zp', 'hqq']);
});

test('a field list must name every field of its type, and only those (checked by the compiler)', () => {
  interface Example { a: number; b?: string }
  assert.deepEqual(fields<Example>({ a: true, b: true }), ['a', 'b']);
  // @ts-expect-error the optional field b is missing
  fields<Example>({ a: true });
  // @ts-expect-error c is not a field of Example
  fields<Example>({ a: true, b: true, c: true });
});
