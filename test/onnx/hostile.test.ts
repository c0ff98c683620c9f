import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { isSphanaError } from '../../src/errors.js';
import { readModel, readModelBytes } from '../../src/onnx/model.js';
import { fixture } from '../helpers/paths.js';

const READER_CODES = new Set(['E_TRUNCATED', 'E_CORRUPT', 'E_NOT_ONNX', 'E_EMPTY_FILE']);

/** Offsets where a top-level ModelProto field ends: a cut there leaves a shorter, valid message. */
function topLevelBoundaries(bytes: Buffer): Set<number> {
  const ends = new Set<number>([0]);
  let pos = 0;
  const varint = () => {
    let v = 0, scale = 1;
    for (;;) {
      const b = bytes[pos++];
      v += (b & 0x7f) * scale;
      scale *= 128;
      if (b < 0x80) return v;
    }
  };
  while (pos < bytes.length) {
    const key = varint();
    const wire = key & 7;
    if (wire === 0) varint();
    else if (wire === 1) pos += 8;
    else if (wire === 5) pos += 4;
    else if (wire === 2) { const n = varint(); pos += n; }
    ends.add(pos);
  }
  return ends;
}

for (const name of ['valid/control_flow.onnx', 'valid/kv_optimum.onnx', 'valid/all_dtypes.onnx', 'valid/functions.onnx', 'valid/unknown_fields.onnx']) {
  test(`truncating ${name} at every offset gives a typed error or a shorter valid model`, () => {
    const bytes = readFileSync(fixture(name));
    const boundaries = topLevelBoundaries(bytes);
    let errors = 0;
    for (let cut = 0; cut < bytes.length; cut++) {
      try {
        readModelBytes(bytes.subarray(0, cut), `${name}[:${cut}]`);
        assert.ok(boundaries.has(cut), `cut at ${cut} decoded without error but is not a field boundary`);
      } catch (error) {
        assert.ok(isSphanaError(error), `cut at ${cut}: untyped ${String(error)}`);
        assert.ok(READER_CODES.has(error.code), `cut at ${cut}: ${error.code}`);
        errors += 1;
      }
    }
    // Nearly every cut lands inside a field.
    assert.ok(errors >= bytes.length - boundaries.size, `${errors} errors for ${bytes.length} cuts`);
  });
}

test('a length prefix claiming gigabytes is refused before anything is allocated', () => {
  const before = process.memoryUsage().arrayBuffers;
  assert.throws(() => readModel(fixture('hostile/graph_len_4gb.onnx')), (e: unknown) => isSphanaError(e) && e.code === 'E_TRUNCATED');
  assert.ok(process.memoryUsage().arrayBuffers - before < 64 << 20);
});

test('random bytes at many seeds never crash: typed error or (rarely) an empty-graph refusal', () => {
  let seed = 12345;
  const next = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) & 0xff;
  for (let i = 0; i < 300; i++) {
    const bytes = Buffer.from(Array.from({ length: 1 + (i * 37) % 2000 }, next));
    try {
      readModelBytes(bytes, `random${i}`);
      assert.fail(`random${i} decoded as a model`);
    } catch (error) {
      assert.ok(isSphanaError(error), `random${i}: untyped ${String(error)}`);
      assert.ok(READER_CODES.has(error.code), `random${i}: ${error.code}`);
    }
  }
});

test('missing file, directory, and empty file have their own codes', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sphana-'));
  try {
    writeFileSync(join(dir, 'empty.onnx'), '');
    const code = (p: string) => { try { readModel(p); return 'none'; } catch (e) { return isSphanaError(e) ? e.code : String(e); } };
    assert.equal(code(join(dir, 'nope.onnx')), 'E_FILE_NOT_FOUND');
    assert.equal(code(dir), 'E_NOT_A_FILE');
    assert.equal(code(join(dir, 'empty.onnx')), 'E_EMPTY_FILE');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
