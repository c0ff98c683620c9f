import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { type CompiledSchema, compileTables, compiledSchemaPath, fnv1a, modelSpec, protoPath } from '../../src/onnx/schema.js';
import { ROOT, testPython } from '../helpers/paths.js';

/** The .proto without comments and with whitespace collapsed: what defines the schema. */
function normalise(proto: string): string {
  return proto.replace(/\/\/[^\n]*/g, '').replace(/\s+/g, ' ').trim();
}

test('the vendored onnx.proto is the onnx-ml.proto of the onnx version pinned in python-bridge/requirements.txt', () => {
  const pin = /^onnx==(\S+)$/m.exec(readFileSync(join(ROOT, 'python-bridge/requirements.txt'), 'utf8'))?.[1];
  assert.ok(pin, 'requirements.txt pins onnx');
  const r = spawnSync(testPython(), ['-c', 'import json, os, onnx; print(json.dumps({"version": onnx.__version__, "dir": os.path.dirname(onnx.__file__)}))'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const onnx = JSON.parse(r.stdout) as { version: string; dir: string };
  assert.equal(onnx.version, pin, 'the test Python has the pinned onnx');
  const theirs = readFileSync(join(onnx.dir, 'onnx-ml.proto'), 'utf8');
  const ours = readFileSync(protoPath(), 'utf8');
  assert.equal(normalise(ours), normalise(theirs), `src/onnx/onnx.proto differs from onnx ${pin}'s onnx-ml.proto: copy it again`);
  // The types the reader reports, which onnx-proto (frozen at ONNX 1.10.2) lacks.
  for (const type of ['FLOAT8E4M3FN = 17', 'UINT4 = 21', 'INT4 = 22', 'FLOAT4E2M1 = 23']) assert.ok(ours.includes(type), type);
});

test('onnx-schema.json holds exactly the tables protobufjs compiles from onnx.proto', () => {
  const stored = JSON.parse(readFileSync(compiledSchemaPath(), 'utf8')) as CompiledSchema;
  const fresh = compileTables();
  assert.equal(stored.protoSha256, fresh.protoSha256, 'onnx.proto changed: run `node scripts/compile-onnx-schema.js`');
  assert.deepEqual(stored, fresh);
  assert.equal(stored.root, 'onnx.ModelProto');
  assert.ok(Object.keys(stored.messages).length >= 20, `${Object.keys(stored.messages).length} messages`);
  // The spec built from the stored tables: ModelProto.graph (7) → GraphProto.initializer (5) → TensorProto.raw_data (9, lazy).
  const graph = modelSpec().fields.get(7);
  assert.equal(graph?.name, 'graph');
  const initializer = graph?.message?.fields.get(5);
  assert.equal(initializer?.name, 'initializer');
  assert.equal(initializer?.repeated, true);
  const raw = initializer?.message?.fields.get(9);
  assert.deepEqual([raw?.name, raw?.kind, raw?.lazy], ['raw_data', 'bytes', true]);
});

test('the start-up key of onnx-schema.json is FNV-1a 32 of the .proto with its length (published test vectors)', () => {
  const enc = (t: string) => new TextEncoder().encode(t);
  assert.equal(fnv1a(enc('')), '0:811c9dc5');
  assert.equal(fnv1a(enc('a')), '1:e40c292c');
  assert.equal(fnv1a(enc('foobar')), '6:bf9cf968');
  const proto = readFileSync(protoPath());
  const stored = JSON.parse(readFileSync(compiledSchemaPath(), 'utf8')) as CompiledSchema;
  assert.equal(stored.protoFnv1a, fnv1a(proto));
  // One changed byte changes the key, so an edited .proto is compiled afresh rather than misread.
  const edited = Buffer.from(proto);
  edited[edited.length >> 1] ^= 1;
  assert.notEqual(fnv1a(edited), stored.protoFnv1a);
});
