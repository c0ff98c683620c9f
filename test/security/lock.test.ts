import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { acquireLock, lockPathFor } from '../../src/artifacts/lock.js';
import { runTag, sweepDeadStaging } from '../../src/cleanup.js';
import { isSphanaError } from '../../src/errors.js';
import { sphana } from '../helpers/cli.js';
import { BIN } from '../helpers/paths.js';
import { buildTinyLlm } from '../helpers/tiny-llm.js';

/** Issue 10 item 5 (a lock per artifact folder, unique staging names) and item 6's sweeps. */
let dir: string;
before(() => { dir = mkdtempSync(join(tmpdir(), 'sphana-lock-')); });
after(() => rmSync(dir, { recursive: true, force: true }));

test('a second lock on one folder fails at once naming the holder; release frees it; stale locks are taken over', () => {
  const target = join(dir, 'out', '0.1.0');
  const release = acquireLock(target, 'sphana export a');
  const lock = lockPathFor(target);
  assert.equal(lock, join(dir, 'out', '.0.1.0.sphana.lock'));
  assert.equal((JSON.parse(readFileSync(lock, 'utf8')) as { pid: number }).pid, process.pid);
  assert.throws(() => acquireLock(target, 'sphana export b'), (e: unknown) => {
    assert.ok(isSphanaError(e));
    assert.equal(e.code, 'E_LOCKED');
    assert.equal(e.exitCode, 4);
    assert.match(e.message, new RegExp(`is in use by pid ${process.pid} on ${hostname()} \\(sphana export a, since `));
    return true;
  });
  release();
  assert.equal(existsSync(lock), false);
  // Stale: a dead pid, a lock from before this boot, an unreadable lock file.
  for (const content of [
    { pid: 999_999_9, host: hostname(), boot: null, start: null, command: 'x', since: 'x', nonce: 'x' },
    { pid: process.pid, host: hostname(), boot: 'another-boot', start: null, command: 'x', since: 'x', nonce: 'x' },
    'not json',
  ]) {
    writeFileSync(lock, typeof content === 'string' ? content : JSON.stringify(content));
    const again = acquireLock(target, 'sphana export c');
    assert.equal((JSON.parse(readFileSync(lock, 'utf8')) as { command: string }).command, 'sphana export c');
    again();
  }
  // Another host's lock cannot be checked from here: it holds.
  writeFileSync(lock, JSON.stringify({ pid: 1, host: 'elsewhere', boot: null, start: null, command: 'ci job', since: 'x', nonce: 'x' }));
  assert.throws(() => acquireLock(target, 'x'), /in use by pid 1 on elsewhere \(ci job/);
  rmSync(lock);
  assert.deepEqual(readdirSync(join(dir, 'out')), []);
});

test('staging names are unique per run; only a dead run\'s staging is swept', () => {
  const tags = new Set(Array.from({ length: 1000 }, () => runTag()));
  assert.equal(tags.size, 1000);
  for (const t of tags) assert.match(t, new RegExp(`^${process.pid}-[0-9a-f]{8}$`));
  const folder = join(dir, 'sweep');
  mkdirSync(folder);
  const live = spawnSync('sh', ['-c', 'echo $PPID'], { encoding: 'utf8' }); // our own pid, alive
  const names = ['.m.onnx.sphana-quantize-9999999-aaaaaaaa', `.m.onnx.sphana-quantize-${live.stdout.trim()}-bbbbbbbb`, `.m.onnx.sphana-quantize-1-cccccccc`, 'm.onnx', '.other.sphana-quantize-9999999-dddddddd'];
  for (const n of names) mkdirSync(join(folder, n));
  const removed = sweepDeadStaging(folder, '.m.onnx.sphana-quantize-');
  assert.deepEqual(removed, ['.m.onnx.sphana-quantize-9999999-aaaaaaaa']);
  assert.deepEqual(readdirSync(folder).sort(), names.filter((n) => n !== removed[0]).sort());
});

test('quantize sweeps the staging a killed run left beside its output and locks the output', () => {
  const model = buildTinyLlm(join(dir, 'q', 'model.onnx'));
  const out = join(dir, 'q', 'model.int8.onnx');
  const dead = join(dir, 'q', '.model.int8.onnx.sphana-quantize-9999999-deadbeef');
  mkdirSync(join(dead, 'direct'), { recursive: true });
  writeFileSync(join(dead, 'direct', 'model.int8.onnx'), 'left by a killed run');
  const r = sphana(['quantize', model, '-o', out, '--strategy', 'direct']);
  assert.equal(r.exitCode, 0, r.stderr);
  assert.deepEqual(readdirSync(join(dir, 'q')).sort(), ['model.int8.onnx', 'model.onnx']);
  const release = acquireLock(out, 'sphana quantize int8 (test)');
  try {
    const locked = sphana(['quantize', model, '-o', out, '--force']);
    assert.equal(locked.exitCode, 4, locked.stderr);
    assert.match(locked.stderr, new RegExp(`^error E_LOCKED: .*model\\.int8\\.onnx is in use by pid ${process.pid} `, 'm'));
  } finally {
    release();
  }
});

test('two exports to one --out: the second fails at once naming the first\'s pid; SIGTERM ends the first with 143 and nothing half-written', async () => {
  const out = join(dir, 'exports');
  const first = spawn(process.execPath, [BIN, 'export', 'smollm2-135m', '--synthetic', 'tiny', '--out', out, '--seed', '0'], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, CI: 'true' } });
  let stderr = '';
  const exited = new Promise<number | null>((resolve) => first.on('exit', (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    first.stderr!.on('data', (d: Buffer) => {
      stderr += d.toString();
      if (/^> /m.test(stderr)) resolve();
    });
    void exited.then((c) => reject(new Error(`first export exited ${c} early: ${stderr}`)));
  });
  const second = sphana(['export', 'smollm2-135m', '--synthetic', 'tiny', '--out', out, '--seed', '1', '--json']);
  assert.equal(second.exitCode, 4, second.stderr);
  const error = (JSON.parse(second.stdout.trim().split('\n').pop()!) as { error: { code: string; message: string } }).error;
  assert.equal(error.code, 'E_LOCKED');
  assert.match(error.message, new RegExp(`0\\.1\\.0 is in use by pid ${first.pid} on .*\\(sphana export smollm2-135m, since `));
  first.kill('SIGTERM');
  assert.equal(await exited, 143, stderr);
  assert.match(stderr, /error E_INTERRUPTED: interrupted \(SIGTERM\)/);
  assert.equal(existsSync(join(out, '.0.1.0.sphana.lock')), false);
  assert.equal(existsSync(join(out, '0.1.0', 'manifest.json')), false);
  const onnx = join(out, '0.1.0', 'onnx');
  assert.deepEqual(existsSync(onnx) ? readdirSync(onnx) : [], []);
});
