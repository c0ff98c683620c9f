import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { ANSI, sphana } from '../helpers/cli.js';
import { ROOT, fixture } from '../helpers/paths.js';

test('--version prints the package version', () => {
  const r = sphana(['--version']);
  assert.equal(r.exitCode, 0);
  assert.equal(r.stdout.trim(), JSON.parse(readFileSync(`${ROOT}/package.json`, 'utf8')).version);
});

test('usage errors exit 2', () => {
  assert.equal(sphana(['no-such-command']).exitCode, 2);
  assert.equal(sphana(['inspect']).exitCode, 2);
  assert.equal(sphana(['inspect', '--no-such-flag', 'x.onnx']).exitCode, 2);
});

test('inspect --json: one object per file, in argument order, stdout JSON only', () => {
  const files = [fixture('valid/kv_optimum.onnx'), 'does/not/exist.onnx', fixture('hostile/random_4k.onnx'), fixture('valid/mlp.onnx')];
  const r = sphana(['inspect', '--json', ...files]);
  assert.equal(r.exitCode, 3);
  const lines = r.stdout.trimEnd().split('\n');
  assert.equal(lines.length, 4);
  const rows = lines.map((l) => JSON.parse(l) as { path: string; error?: { code: string }; kvCache?: { layers: number } });
  assert.deepEqual(rows.map((row) => row.path), files);
  assert.equal(rows[0].kvCache?.layers, 3);
  assert.equal(rows[1].error?.code, 'E_FILE_NOT_FOUND');
  assert.equal(rows[2].error?.code, 'E_NOT_ONNX');
  assert.equal(rows[3].error, undefined);
  assert.match(r.stderr, /E_FILE_NOT_FOUND/);
  assert.doesNotMatch(r.stdout, ANSI);
});

test('inspect for people: summary on stdout, no colour when piped, KV line with real dims', () => {
  const r = sphana(['inspect', fixture('valid/kv_past_key_n.onnx')]);
  assert.equal(r.exitCode, 0, r.stderr);
  assert.doesNotMatch(r.stdout + r.stderr, ANSI);
  assert.match(r.stdout, /kv cache: 2 layers × 1 kv heads × 256 head dim, float32/);
  assert.match(r.stdout, /past_key_%d ×2 +float32\[/);
});

test('a model whose external data is missing prints its summary and exits 3', () => {
  const r = sphana(['inspect', '--json', fixture('hostile/ext_missing/model.onnx')]);
  assert.equal(r.exitCode, 3);
  const row = JSON.parse(r.stdout) as { externalDataFiles: Array<{ status: string }> };
  assert.equal(row.externalDataFiles[0].status, 'missing');
  assert.match(r.stderr, /E_EXTERNAL_DATA_MISSING/);
});

test('--verbose adds a stack trace; otherwise errors are one line plus a hint', () => {
  const plain = sphana(['inspect', fixture('hostile/tensor_proto.onnx')]);
  assert.equal(plain.exitCode, 3);
  assert.deepEqual(plain.stderr.trimEnd().split('\n').map((l) => l.split(':')[0].trim()), ['error E_NOT_ONNX', 'hint']);
  const verbose = sphana(['inspect', '--verbose', fixture('hostile/tensor_proto.onnx')]);
  assert.match(verbose.stderr, /at .*model\.js/);
});
