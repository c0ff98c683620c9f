import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { isSphanaError } from '../../src/errors.js';
import { inspectFile } from '../../src/onnx/summary.js';
import { ROOT, fixture } from '../helpers/paths.js';

/** fixtures/expected.json: what a correct reader reports for each fixture, or the error it raises. */
interface Row {
  file: string;
  error: string | null;
  kvCache?: Record<string, unknown> | null;
  quantization?: { methods: string[] };
  externalDataStatus?: Record<string, string>;
}

const rows = JSON.parse(readFileSync(`${ROOT}/fixtures/expected.json`, 'utf8')) as Row[];

test('expected.json covers valid and hostile fixtures', () => {
  assert.ok(rows.filter((r) => r.error).length >= 12);
  assert.ok(rows.filter((r) => r.kvCache).length >= 5);
});

for (const row of rows) {
  test(`fixture ${row.file}`, () => {
    const path = fixture(row.file);
    if (row.error) {
      assert.throws(() => inspectFile(path), (error: unknown) => {
        assert.ok(isSphanaError(error), `not a typed error: ${String(error)}`);
        assert.equal(error.code, row.error, error.message);
        assert.equal(error.exitCode, 3);
        assert.ok(!error.message.includes('\n'), 'one-line message');
        return true;
      });
      return;
    }
    const summary = inspectFile(path);
    if (row.kvCache !== undefined) {
      if (row.kvCache === null) assert.equal(summary.kvCache, null);
      else {
        assert.ok(summary.kvCache, 'kvCache detected');
        for (const [key, value] of Object.entries(row.kvCache)) {
          assert.deepEqual((summary.kvCache as unknown as Record<string, unknown>)[key], value, `kvCache.${key}`);
        }
        if (row.kvCache.numKvHeads === null) assert.match(summary.kvCache.reason ?? '', /symbolic|unknown/);
      }
    }
    if (row.quantization) {
      assert.deepEqual([...summary.quantization.methods].sort(), [...row.quantization.methods].sort());
      assert.equal(summary.quantization.quantized, row.quantization.methods.length > 0);
    }
    if (row.externalDataStatus) {
      const got = Object.fromEntries(summary.externalDataFiles.map((f) => [f.location, f.status]));
      assert.deepEqual(got, row.externalDataStatus);
      const bad = Object.values(row.externalDataStatus).some((s) => s !== 'ok');
      assert.equal(summary.problems.length > 0, bad);
    }
  });
}

test('unknown external_data keys are reported, not obeyed', () => {
  const s = inspectFile(fixture('valid/ext_unknown_key/model.onnx'));
  assert.deepEqual(s.unknownExternalDataKeys, [{ tensor: 'w', key: 'sphana.unknown' }, { tensor: 'b', key: 'sphana.unknown' }]);
  assert.equal(s.externalDataFiles[0].status, 'ok');
});

test('unsafe locations are never opened: file size is not even looked at', () => {
  for (const dir of ['ext_parent_dir', 'ext_absolute', 'ext_symlink']) {
    const s = inspectFile(fixture('hostile', dir, 'model.onnx'));
    assert.equal(s.externalDataFiles[0].fileBytes, null, dir);
    assert.equal(s.problems[0].code, 'E_UNSAFE_EXTERNAL_DATA', dir);
  }
});

test('short external data states the sizes', () => {
  const s = inspectFile(fixture('hostile/ext_short/model.onnx'));
  const f = s.externalDataFiles[0];
  assert.equal(f.status, 'short');
  assert.ok(f.fileBytes !== null && f.fileBytes < f.requiredBytes, `${f.fileBytes} < ${f.requiredBytes}`);
});
