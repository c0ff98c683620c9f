import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { test } from 'node:test';
import { sphana } from '../helpers/cli.js';
import { requirementsHash } from '../../src/python/environment.js';
import { FAKE_PYTHON, script, tempDir } from './helpers.js';

const ortNodeVersion = (JSON.parse(readFileSync(createRequire(import.meta.url).resolve('onnxruntime-node/package.json'), 'utf8')) as { version: string }).version;

test('doctor --json without a usable Python: exit 4, E_NO_PYTHON with its attempts, no environment', () => {
  const cache = tempDir();
  const missing = join(cache, 'no-python');
  const r = sphana(['doctor', '--json'], { SPHANA_PYTHON: missing, SPHANA_CACHE_DIR: cache });
  assert.equal(r.exitCode, 4);
  const report = JSON.parse(r.stdout);
  assert.equal(report.healthy, false);
  assert.deepEqual(report.problems.map((p: { code: string }) => p.code), ['E_NO_PYTHON']);
  assert.match(report.problems[0].hint, /SPHANA_PYTHON/);
  assert.deepEqual(report.python, { chosen: null, attempts: [{ candidate: `SPHANA_PYTHON=${missing}`, ok: false, reason: 'not found' }] });
  const hash = requirementsHash();
  assert.deepEqual(report.environment, {
    dir: join(cache, `python-${hash}`), requirementsHash: hash, existed: false, created: false, healthy: false, python: null,
  });
  assert.deepEqual(report.bridge.packages, {});
  assert.equal(report.node.version, process.version);
  assert.equal(report.onnxruntimeNode.version, ortNodeVersion);
  assert.equal(report.cache.dir, cache);
  assert.equal(typeof report.cache.freeBytes, 'number');
});

test('doctor builds a missing environment, lists the bridge\'s package versions, exit 0; then reuses it', () => {
  const cache = tempDir();
  const python = script(join(cache, 'base-python'), FAKE_PYTHON);
  const env = { SPHANA_PYTHON: python, SPHANA_CACHE_DIR: cache };
  const first = sphana(['doctor'], env);
  assert.equal(first.exitCode, 0, first.stderr);
  const lines = first.stdout.trimEnd().split('\n');
  const venv = join(cache, `python-${requirementsHash()}`);
  assert.deepEqual(lines.filter((l) => /^(python|  tried|bridge env|bridge python|  onnx|  torch|status) /.test(l)).map((l) => l.replace(/(?<=\S) +/g, ' ')), [
    `python 3.11.7 ${python}`,
    `  tried SPHANA_PYTHON=${python}: 3.11.7 ok`,
    `bridge env ${venv} created now`,
    'bridge python 3.11.7',
    '  onnx 1.23.2',
    '  torch 2.13.0+cpu',
    'status healthy',
  ]);
  assert.match(first.stderr, /Creating the Python bridge environment \(not created yet\)/);

  const again = sphana(['doctor', '--json'], env);
  assert.equal(again.exitCode, 0);
  const report = JSON.parse(again.stdout);
  assert.deepEqual([report.healthy, report.environment.existed, report.environment.created, report.environment.healthy], [true, true, false, true]);
  assert.deepEqual(report.bridge.packages, { onnx: '1.23.2', torch: '2.13.0+cpu' });
  assert.deepEqual(report.problems, []);
});

test('doctor reports a package whose version differs from the pin: exit 4, E_BRIDGE_VERSION with the fix', () => {
  const cache = tempDir();
  const python = script(join(cache, 'base-python'), FAKE_PYTHON);
  const r = sphana(['doctor', '--json'], { SPHANA_PYTHON: python, SPHANA_CACHE_DIR: cache, FAKE_ONNX_VERSION: '1.22.0' });
  assert.equal(r.exitCode, 4);
  const report = JSON.parse(r.stdout);
  const venv = join(cache, `python-${requirementsHash()}`);
  assert.deepEqual(report.problems, [{
    code: 'E_BRIDGE_VERSION',
    message: 'onnx 1.22.0 is installed but 1.23.2 is pinned',
    hint: `delete ${venv} and run \`sphana doctor\` to rebuild the bridge environment`,
  }]);
});
