import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { inspectFile, toJsonLine } from '../../src/onnx/summary.js';
import { ROOT, fixture, listFiles, onnxBackendModels, testPython } from '../helpers/paths.js';

/**
 * Differential test: `sphana inspect --json` must agree field by field with the onnx Python
 * package (test/reference/onnx_reference.py) on every model: our fixtures and the onnx
 * package's own backend test models.
 */
const FIELDS = ['path', 'fileBytes', 'irVersion', 'opsets', 'producer', 'metadata', 'inputs', 'outputs', 'nodeCount', 'ops', 'initializers', 'externalData'] as const;

function reference(paths: string[]): Map<string, Record<string, unknown>> {
  const r = spawnSync(testPython(), [join(ROOT, 'test/reference/onnx_reference.py'), ...paths], { encoding: 'utf8', maxBuffer: 1 << 28 });
  const rows = r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.equal(rows.length, paths.length, `reference printed ${rows.length} rows for ${paths.length} models: ${r.stderr}`);
  return new Map(rows.map((row) => [row.path as string, row]));
}

// hostile/pb_*: crafted protobuf (merged graph copies, concatenated models, closed enums) that
// parse fine; only their external data is unsafe, and inspect must see the same tensors onnx does.
const protobufHostile = listFiles(fixture('hostile'), '.onnx').filter((p) => /[\\/]pb_/.test(p));
const models = [...listFiles(fixture('valid'), '.onnx'), ...protobufHostile, ...onnxBackendModels()];

test('the protobuf-semantics fixtures are in the differential set', () => {
  assert.equal(protobufHostile.length, 3);
  assert.equal(models.filter((p) => /[\\/]pb_/.test(p)).length, 7);
});

test('the differential set is broad', () => {
  assert.ok(models.length >= 150, `only ${models.length} models`);
});

test('inspect agrees with the onnx package on every model', () => {
  const expected = reference(models);
  let compared = 0;
  for (const path of models) {
    const want = expected.get(path)!;
    assert.ok(!('error' in want), `onnx could not load ${path}: ${JSON.stringify(want.error)}`);
    const got = JSON.parse(toJsonLine(inspectFile(path))) as Record<string, unknown>;
    for (const field of FIELDS) {
      assert.deepEqual(got[field], want[field], `${path}: field ${field} differs`);
    }
    const functions = got.functions as Array<{ name: string; nodeCount: number }>;
    assert.deepEqual(functions.map((f) => f.name).sort(), want.functions, `${path}: functions differ`);
    assert.equal(functions.reduce((n, f) => n + f.nodeCount, 0), want.nodeCountFunctions, `${path}: function node counts differ`);
    compared += 1;
  }
  assert.equal(compared, models.length);
});
