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

test('the start-up key of onnx-schema.json: FNV-1a over little-endian 32-bit words and the tail, with the length', () => {
  // A plain reference: bytes → LE words by arithmetic, FNV-1a 32 (offset basis 0x811c9dc5, prime 0x01000193).
  const reference = (b: Uint8Array) => {
    let h = 0x811c9dc5;
    const words = Math.floor(b.length / 4);
    for (let i = 0; i < words; i++) h = Math.imul(h ^ (b[4 * i] | (b[4 * i + 1] << 8) | (b[4 * i + 2] << 16) | (b[4 * i + 3] << 24)), 0x01000193);
    for (let i = words * 4; i < b.length; i++) h = Math.imul(h ^ b[i], 0x01000193);
    return `${b.length}:${(h >>> 0).toString(16).padStart(8, '0')}`;
  };
  // Under four bytes it is FNV-1a itself (published vectors: "" 811c9dc5, "a" e40c292c).
  assert.equal(fnv1a(new Uint8Array(0)), '0:811c9dc5');
  assert.equal(fnv1a(new TextEncoder().encode('a')), '1:e40c292c');
  const data = Buffer.alloc(4099);
  for (let i = 0; i < data.length; i++) data[i] = (i * 2654435761) >>> 24;
  for (const n of [1, 3, 4, 5, 8, 1027, 4099]) {
    assert.equal(fnv1a(data.subarray(0, n)), reference(data.subarray(0, n)), `${n} bytes`);
    assert.equal(fnv1a(data.subarray(1, 1 + n > data.length ? data.length : 1 + n)), reference(data.subarray(1, Math.min(data.length, 1 + n))), `${n} bytes, unaligned`);
  }
  const proto = readFileSync(protoPath());
  const stored = JSON.parse(readFileSync(compiledSchemaPath(), 'utf8')) as CompiledSchema;
  assert.equal(stored.protoFnv1a, fnv1a(proto));
  assert.equal(stored.protoFnv1a, reference(proto));
  // One changed byte changes the key, so an edited .proto is compiled afresh rather than misread.
  for (const at of [0, proto.length >> 1, proto.length - 1]) {
    const edited = Buffer.from(proto);
    edited[at] ^= 1;
    assert.notEqual(fnv1a(edited), stored.protoFnv1a, `byte ${at}`);
  }
});
