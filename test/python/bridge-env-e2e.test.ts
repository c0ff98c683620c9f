/**
 * SLOW, REAL: builds the bridge environment from scratch with the machine's Python and pip
 * (about a minute: pip installs python-bridge/requirements.txt into a fresh cache folder),
 * then runs the real `python -m sphana_bridge versions` in it and `sphana doctor` on it.
 * Set SPHANA_SKIP_E2E=1 to skip.
 */
import assert from 'node:assert/strict';
import { readdirSync, rmSync } from 'node:fs';
import { test } from 'node:test';
import { sphana } from '../helpers/cli.js';
import { ensureBridgeEnvironment } from '../../src/python/environment.js';
import { bridgeVersions } from '../../src/python/entry-points.js';
import { tempDir } from './helpers.js';

const skip = process.env.SPHANA_SKIP_E2E ? 'SPHANA_SKIP_E2E is set' : false;

test('[slow, real pip install] a fresh bridge environment; `versions` reports the pinned onnx, onnxruntime and numpy', { skip, timeout: 15 * 60_000 }, async (t) => {
  const cache = tempDir('sphana-e2e-cache-');
  t.after(() => rmSync(cache, { recursive: true, force: true }));
  const env = { ...process.env, SPHANA_CACHE_DIR: cache };
  // `sphana setup` builds it as a visible step, here in CI's plain lines.
  const setup = sphana(['setup', '--json'], { SPHANA_CACHE_DIR: cache, CI: '1' });
  assert.equal(setup.exitCode, 0, setup.stderr);
  const made = JSON.parse(setup.stdout) as { created: boolean; venvDir: string; seconds: number; requirementsHash: string };
  assert.equal(made.created, true);
  assert.ok(made.seconds > 0);
  assert.deepEqual(readdirSync(cache), [`python-${made.requirementsHash}`]);
  assert.match(setup.stderr, /^> Python environment \(first run\)$/m);
  assert.match(setup.stderr, /^ {2}Python environment \(first run\): (collecting \S+ \S+ \(\d+\/\d+\)|installing \d+ (pinned )?packages.*) \(\d+s\)$/m);
  assert.match(setup.stderr, /^ok Python environment \(first run\) .* \(\d+\.\ds\)$/m);
  const built = await ensureBridgeEnvironment({ env });
  assert.deepEqual([built.created, built.venvDir], [false, made.venvDir]);
  const quiet = sphana(['setup'], { SPHANA_CACHE_DIR: cache, CI: '1' });
  assert.equal(quiet.exitCode, 0);
  assert.doesNotMatch(quiet.stderr, /Python environment/, 'a healthy environment is no step');

  const versions = await bridgeVersions(built, { timeoutMs: 120_000 });
  assert.match(versions.python, /^3\.\d+\.\d+/);
  assert.equal(versions.packages.onnx, '1.23.2');
  assert.equal(versions.packages.onnxruntime, '1.30.0');
  assert.equal(versions.packages.numpy, '2.4.6');

  const again = await ensureBridgeEnvironment({ env });
  assert.deepEqual(again, built);

  const doctor = sphana(['doctor', '--json'], { SPHANA_CACHE_DIR: cache });
  assert.equal(doctor.exitCode, 0, doctor.stdout);
  const report = JSON.parse(doctor.stdout);
  assert.deepEqual([report.healthy, report.environment.dir, report.environment.created], [true, built.venvDir, false]);
  assert.equal(report.bridge.packages.onnx, '1.23.2');
});
