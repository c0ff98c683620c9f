import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { EnvironmentError } from '../../src/errors.js';
import { MARKER, cacheDir, ensureBridgeEnvironment, inspectBridgeEnvironment, requirementsHash } from '../../src/python/environment.js';
import { FAKE_PYTHON, script, tempDir } from './helpers.js';

function setup(requirements = 'onnx==1.23.2\n') {
  const root = tempDir();
  const bridge = join(root, 'python-bridge');
  mkdirSync(bridge);
  writeFileSync(join(bridge, 'requirements.txt'), requirements);
  const python = script(join(root, 'base-python'), FAKE_PYTHON);
  const cache = join(root, 'cache');
  const env = { PATH: process.env.PATH, SPHANA_CACHE_DIR: cache, SPHANA_PYTHON: python };
  return { root, bridge, cache, env, hash: requirementsHash(bridge) };
}

test('the cache folder: SPHANA_CACHE_DIR, then XDG_CACHE_HOME/sphana, then ~/.cache/sphana', () => {
  assert.equal(cacheDir({ SPHANA_CACHE_DIR: '/a', XDG_CACHE_HOME: '/b' }), '/a');
  assert.equal(cacheDir({ XDG_CACHE_HOME: '/b' }), '/b/sphana');
  assert.equal(cacheDir({}), join(homedir(), '.cache', 'sphana'));
});

test('the requirements hash: 12 hex digits over every requirements*.txt; a missing requirements.txt is E_BRIDGE_ENV', () => {
  const { bridge, hash } = setup();
  assert.match(hash, /^[0-9a-f]{12}$/);
  assert.equal(requirementsHash(bridge), hash);
  writeFileSync(join(bridge, 'requirements-extra.txt'), 'numpy==2.4.6\n');
  assert.notEqual(requirementsHash(bridge), hash);
  rmSync(join(bridge, 'requirements.txt'));
  assert.throws(() => requirementsHash(bridge), { code: 'E_BRIDGE_ENV', message: /no requirements\.txt/ });
});

test('builds under a temporary name, reports pip progress, renames into place, then reuses it', async () => {
  const { bridge, cache, env, hash } = setup();
  mkdirSync(join(cache, `python-${hash}.tmp-999999999-dead00`), { recursive: true }); // left by a dead sphana
  const progress: string[] = [];
  const first = await ensureBridgeEnvironment({ env, bridgeDir: bridge, onProgress: (line) => progress.push(line) });
  const venv = join(cache, `python-${hash}`);
  assert.deepEqual(first, { python: join(venv, 'bin', 'python'), venvDir: venv, requirementsHash: hash, created: true, bridgeDir: bridge });
  assert.deepEqual(progress, [
    'creating a virtual environment with Python 3.11.7',
    'installing 1 package pinned in requirements.txt with pip',
    'collecting onnx 1.23.2 (1/1)',
    'downloading onnx-1.23.2.whl (16 MB) (1/1)',
    'installing 1 package',
    'installed 1 package',
  ]);
  assert.deepEqual(readdirSync(cache), [`python-${hash}`]);
  const pipArgs = readFileSync(join(venv, 'pip-args'), 'utf8').trim();
  assert.equal(pipArgs, `-m pip install --disable-pip-version-check -r ${join(bridge, 'requirements.txt')}`);
  // The venv's own paths point at the final folder, not the temporary one.
  assert.equal(readFileSync(join(venv, 'bin', 'activate'), 'utf8'), `VIRTUAL_ENV="${venv}"\n`);
  assert.equal(readFileSync(join(venv, 'bin', 'tool'), 'utf8'), `#!${venv}/bin/python\n`);
  assert.equal(JSON.parse(readFileSync(join(venv, MARKER), 'utf8')).requirementsHash, hash);

  const again = await ensureBridgeEnvironment({ env, bridgeDir: bridge, onProgress: (line) => progress.push(line) });
  assert.deepEqual(again, { ...first, created: false });
  assert.equal(progress.length, 6);
});

test('a broken environment (marker missing, or python gone) is reported and rebuilt', async () => {
  const { bridge, cache, env, hash } = setup();
  const venv = join(cache, `python-${hash}`);
  assert.deepEqual(await inspectBridgeEnvironment({ env, bridgeDir: bridge }), {
    venvDir: venv, requirementsHash: hash, bridgeDir: bridge, cacheDir: cache, exists: false, healthy: false, problem: 'not created yet',
  });
  await ensureBridgeEnvironment({ env, bridgeDir: bridge });
  assert.equal((await inspectBridgeEnvironment({ env, bridgeDir: bridge })).healthy, true);

  rmSync(join(venv, MARKER));
  const noMarker = await inspectBridgeEnvironment({ env, bridgeDir: bridge });
  assert.deepEqual([noMarker.exists, noMarker.healthy, noMarker.problem], [true, false, 'installation marker missing (incomplete install)']);
  assert.equal((await ensureBridgeEnvironment({ env, bridgeDir: bridge })).created, true);

  rmSync(join(venv, 'bin', 'python'));
  const noPython = await inspectBridgeEnvironment({ env, bridgeDir: bridge });
  assert.deepEqual([noPython.exists, noPython.healthy, noPython.problem], [true, false, 'its python does not run (ENOENT)']);
  assert.equal((await ensureBridgeEnvironment({ env, bridgeDir: bridge })).created, true);
  assert.equal((await inspectBridgeEnvironment({ env, bridgeDir: bridge })).healthy, true);
  assert.deepEqual(readdirSync(cache), [`python-${hash}`]);
});

test('other requirements give another environment folder', async () => {
  const a = setup('onnx==1.23.2\n');
  const b = setup('onnx==1.23.1\n');
  assert.notEqual(a.hash, b.hash);
});

test('a failed pip install is E_BRIDGE_ENV with pip\'s error and output tail, and leaves nothing behind', async () => {
  const { bridge, cache, env } = setup();
  await assert.rejects(ensureBridgeEnvironment({ env: { ...env, FAKE_PIP_FAIL: '1' }, bridgeDir: bridge }), (error: unknown) => {
    assert.ok(error instanceof EnvironmentError);
    assert.equal(error.code, 'E_BRIDGE_ENV');
    assert.equal(error.exitCode, 4);
    assert.equal(error.message, 'building the bridge environment failed: pip install (exit status 1): ERROR: No matching distribution found for onnx==1.23.2');
    assert.match(error.hint ?? '', /pip/);
    const tail = error.details?.outputTail as string[];
    assert.equal(tail.at(-1), '[notice] done');
    assert.ok(tail.includes('Collecting onnx==1.23.2'));
    return true;
  });
  assert.deepEqual(readdirSync(cache), []);
});

test('no usable base Python: E_NO_PYTHON, and nothing is created', async () => {
  const { bridge, cache, env } = setup();
  await assert.rejects(ensureBridgeEnvironment({ env: { ...env, SPHANA_PYTHON: join(cache, 'nope') }, bridgeDir: bridge }), { code: 'E_NO_PYTHON' });
  assert.equal(existsSync(cache) ? readdirSync(cache).length : 0, 0);
});
