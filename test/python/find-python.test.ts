import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { EnvironmentError } from '../../src/errors.js';
import { type PythonAttempt, describeAttempt, findPython } from '../../src/python/find-python.js';
import { fakePython, script, tempDir } from './helpers.js';

/** A PATH folder with: python3.13 without venv, python3.12 too old, no python3.11, python3 broken, python good. */
function fakePath(withGood: boolean): string {
  const dir = tempDir();
  fakePython(join(dir, 'python3.12'), '3.8.18');
  fakePython(join(dir, 'python3.13'), '3.13.1', 'no');
  script(join(dir, 'python3'), '#!/bin/sh\necho "python3: cannot start" >&2\nexit 127\n');
  if (withGood) fakePython(join(dir, 'python'), '3.12.1', 'yes', '/opt/fake/bin/python3.12');
  else writeFileSync(join(dir, 'python'), 'not executable');
  return dir;
}

const summary = (attempts: PythonAttempt[]) => attempts.map(describeAttempt);

test('tries the PATH candidates in order and reports why each was rejected', async () => {
  const dir = fakePath(true);
  const seen: string[] = [];
  const found = await findPython({ env: { PATH: dir }, onAttempt: (a) => seen.push(describeAttempt(a)) });
  const expected = [
    'python3.13: no venv module',
    'python3.12: too old (3.8.18)',
    'python3.11: not found',
    'python3: not runnable (python3: cannot start)',
    'python: 3.12.1 ok',
  ];
  assert.deepEqual(seen, expected);
  assert.deepEqual(summary(found.attempts), expected);
  assert.equal(found.command, join(dir, 'python'));
  assert.equal(found.executable, '/opt/fake/bin/python3.12');
  assert.equal(found.version, '3.12.1');
});

test('stops at the first suitable candidate', async () => {
  const dir = tempDir();
  fakePython(join(dir, 'python3.12'), '3.12.0');
  fakePython(join(dir, 'python3'), '3.11.2');
  const found = await findPython({ env: { PATH: dir } });
  assert.deepEqual(summary(found.attempts), ['python3.13: not found', 'python3.12: 3.12.0 ok']);
});

test('no suitable Python: E_NO_PYTHON lists every attempt in one line, with a hint', async () => {
  const dir = fakePath(false);
  await assert.rejects(findPython({ env: { PATH: dir } }), (error: unknown) => {
    assert.ok(error instanceof EnvironmentError);
    assert.equal(error.code, 'E_NO_PYTHON');
    assert.equal(error.exitCode, 4);
    assert.equal(
      error.message,
      'no Python ≥ 3.11 with venv found: python3.13: no venv module; python3.12: too old (3.8.18); python3.11: not found; ' +
        'python3: not runnable (python3: cannot start); python: not found',
    );
    assert.ok(!error.message.includes('\n'));
    assert.match(error.hint ?? '', /apt-get install python3 python3-venv/);
    assert.match(error.hint ?? '', /SPHANA_PYTHON/);
    assert.equal((error.details?.attempts as PythonAttempt[]).length, 5);
    return true;
  });
});

test('SPHANA_PYTHON pointing at a missing file is the only attempt', async () => {
  const dir = fakePath(true); // a good python on PATH must not be used
  const seen: PythonAttempt[] = [];
  const missing = join(tempDir(), 'no-such-python');
  await assert.rejects(findPython({ env: { PATH: dir, SPHANA_PYTHON: missing }, onAttempt: (a) => seen.push(a) }), (error: unknown) => {
    assert.ok(error instanceof EnvironmentError);
    assert.equal(error.code, 'E_NO_PYTHON');
    assert.equal(error.message, `no Python ≥ 3.11 with venv found: SPHANA_PYTHON=${missing}: not found`);
    assert.match(error.hint ?? '', /SPHANA_PYTHON/);
    return true;
  });
  assert.deepEqual(seen, [{ candidate: `SPHANA_PYTHON=${missing}`, ok: false, reason: 'not found' }]);
});

test('SPHANA_PYTHON pointing at a good Python is used without looking at PATH', async () => {
  const dir = tempDir();
  mkdirSync(join(dir, 'elsewhere'));
  const good = fakePython(join(dir, 'elsewhere', 'py'), '3.11.9', 'yes', '/opt/py/bin/python3.11');
  const found = await findPython({ env: { PATH: fakePath(true), SPHANA_PYTHON: good } });
  assert.deepEqual(summary(found.attempts), [`SPHANA_PYTHON=${good}: 3.11.9 ok`]);
  assert.equal(found.command, good);
  assert.equal(found.executable, '/opt/py/bin/python3.11');
});

test('SPHANA_PYTHON may name a command on PATH; a too-old one is rejected', async () => {
  const dir = tempDir();
  fakePython(join(dir, 'mypython'), '3.9.18');
  await assert.rejects(findPython({ env: { PATH: dir, SPHANA_PYTHON: 'mypython' } }), {
    code: 'E_NO_PYTHON',
    message: 'no Python ≥ 3.11 with venv found: SPHANA_PYTHON=mypython: too old (3.9.18)',
  });
});

test('a real interpreter passes the probe (the system python3, when there is one)', async (t) => {
  let found;
  try {
    found = await findPython();
  } catch {
    t.skip('no suitable Python on this machine');
    return;
  }
  assert.match(found.version, /^3\.\d+\.\d+$/);
  assert.ok(found.executable.length > 0);
});
