import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Manifest, ManifestFile } from '../../src/manifest/schema.js';
import { sphana } from '../helpers/cli.js';
import { BIN, ROOT } from '../helpers/paths.js';
import { type Models, buildModels, makeArtifact } from '../verify/fixture.js';

/**
 * Deploy's safety (issue 10, items 2-5, 6 and 8): paths from the manifest stay inside the
 * artifact, every copied or rewritten file is checked, --force replaces only a previous
 * deployment, unverified artifacts are refused, the target is locked, SIGTERM and a full
 * disk leave nothing behind.
 */
let models: Models;
let root: string;
let good: string;
const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');
const readManifest = (dir: string) => JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as Manifest;
const writeManifest = (dir: string, m: Manifest) => writeFileSync(join(dir, 'manifest.json'), `${JSON.stringify(m, null, 2)}\n`);

/** Every entry below `dir` (files and folders), relative, sorted. */
function tree(dir: string): string[] {
  return readdirSync(dir, { recursive: true }).map(String).sort();
}

function addFile(dir: string, path: string, content: Buffer | string, role: ManifestFile['role']): void {
  writeFileSync(join(dir, path), content);
  const m = readManifest(dir);
  m.files.push({ path, bytes: Buffer.byteLength(content), sha256: sha(content), role });
  writeManifest(dir, m);
}

let n = 0;
/** A fresh copy of the good artifact, under its own parent folder. */
function copy(label: string): { parent: string; artifact: string } {
  const parent = join(root, `${++n}-${label}`);
  mkdirSync(parent);
  const artifact = join(parent, 'artifact');
  cpSync(good, artifact, { recursive: true });
  return { parent, artifact };
}

before(async () => {
  models = buildModels();
  root = mkdtempSync(join(tmpdir(), 'sphana-deploy-safety-'));
  good = join(root, 'good');
  await makeArtifact(models, good, { fp32: 'ext', int8: 'int8' });
  addFile(good, 'onnx/genai_config.json', `${JSON.stringify({ model: { decoder: { filename: 'llm_generator.onnx' } } }, null, 2)}\n`, 'genai-config');
  const m = readManifest(good);
  m.verification = { ok: true };
  writeManifest(good, m);
});
after(() => {
  rmSync(root, { recursive: true, force: true });
  rmSync(models.root, { recursive: true, force: true });
});

test('a good artifact deploys; --force replaces a previous deployment', () => {
  const { parent, artifact } = copy('ok');
  const to = join(parent, 'consumer');
  const r = sphana(['deploy', artifact, '--to', to, '--precision', 'fp32']);
  assert.equal(r.exitCode, 0, r.stderr);
  assert.equal(readManifest(to).models[0].precision, 'fp32');
  const again = sphana(['deploy', artifact, '--to', to, '--precision', 'int8', '--force']);
  assert.equal(again.exitCode, 0, again.stderr);
  assert.equal(readManifest(to).models[0].precision, 'int8');
  assert.deepEqual(readdirSync(parent).sort(), ['artifact', 'consumer']);
});

test('a files[] entry ../secret/creds.json is refused (exit 3) and nothing is copied', () => {
  const { parent, artifact } = copy('escape');
  mkdirSync(join(parent, 'secret'));
  writeFileSync(join(parent, 'secret', 'creds.json'), '{"password":"hunter2"}');
  const m = readManifest(artifact);
  m.files.push({ path: '../secret/creds.json', bytes: 22, sha256: sha('{"password":"hunter2"}'), role: 'tokenizer' });
  writeManifest(artifact, m);
  const to = join(parent, 'consumer');
  const r = sphana(['deploy', artifact, '--to', to, '--json']);
  assert.equal(r.exitCode, 3, r.stderr);
  assert.equal((JSON.parse(r.stdout) as { error: { code: string } }).error.code, 'E_UNSAFE_PATH');
  assert.match(r.stderr, /error E_UNSAFE_PATH: manifest files\[\] entry "\.\.\/secret\/creds\.json" is unsafe: contains a '\.\.' segment/);
  assert.deepEqual(readdirSync(parent).sort(), ['artifact', 'secret']);
});

test('a listed file that is a symlink out of the artifact is refused (exit 3), by deploy and by verify', () => {
  const { parent, artifact } = copy('symlink');
  const secret = join(parent, 'creds.json');
  const original = readFileSync(join(artifact, 'onnx', 'tokenizer_config.json'));
  writeFileSync(secret, original); // same bytes: only the path check can catch it
  unlinkSync(join(artifact, 'onnx', 'tokenizer_config.json'));
  symlinkSync(secret, join(artifact, 'onnx', 'tokenizer_config.json'));
  const to = join(parent, 'consumer');
  const r = sphana(['deploy', artifact, '--to', to]);
  assert.equal(r.exitCode, 3, r.stderr);
  assert.match(r.stderr, /error E_UNSAFE_PATH: manifest files\[\] entry "onnx\/tokenizer_config\.json" is unsafe: resolves outside its folder \(symlink\)/);
  assert.deepEqual(readdirSync(parent).sort(), ['artifact', 'creds.json']);
  const v = sphana(['verify', artifact, '--json']);
  assert.equal(v.exitCode, 3, v.stderr);
  assert.match(v.stderr, /E_UNSAFE_PATH/);
});

test('verify never runs a model the manifest names outside the folder', () => {
  const { parent, artifact } = copy('verify-outside');
  cpSync(join(artifact, 'onnx', 'llm_generator.int8.onnx'), join(parent, 'outside.onnx'));
  const m = readManifest(artifact);
  m.models[1].path = '../outside.onnx';
  writeManifest(artifact, m);
  const r = sphana(['verify', artifact]);
  assert.equal(r.exitCode, 3, r.stderr);
  assert.match(r.stderr, /^error E_UNSAFE_PATH: manifest model "\.\.\/outside\.onnx" is unsafe: contains a '\.\.' segment$/m);
  assert.doesNotMatch(r.stderr, /runtime|agreement/);
});

test('the genai config is checked against its recorded sha256 before it is rewritten', () => {
  const { parent, artifact } = copy('genai');
  const path = join(artifact, 'onnx', 'genai_config.json');
  const text = readFileSync(path, 'utf8');
  writeFileSync(path, text.replace('"filename"', '"fileName"')); // same size, other bytes
  const r = sphana(['deploy', artifact, '--to', join(parent, 'consumer')]);
  assert.equal(r.exitCode, 1, r.stderr);
  assert.match(r.stderr, /error E_COPY_MISMATCH: onnx\/genai_config\.json: the copy's sha256 [0-9a-f]{12}… differs from the manifest's/);
  assert.deepEqual(readdirSync(parent).sort(), ['artifact']);
  truncateSync(path, 10); // a size the manifest does not record: refused before copying
  const short = sphana(['deploy', artifact, '--to', join(parent, 'consumer')]);
  assert.equal(short.exitCode, 1);
  assert.match(short.stderr, /E_COPY_MISMATCH: onnx\/genai_config\.json: is 10 bytes, the manifest records \d+/);
  assert.deepEqual(readdirSync(parent).sort(), ['artifact']);
});

test('an artifact whose verification failed or never ran is refused unless --allow-unverified', () => {
  const { parent, artifact } = copy('unverified');
  for (const [verification, why] of [[null, 'was never verified'], [{ ok: false, failed: ['agreement'] }, 'failed its verification']] as const) {
    const m = readManifest(artifact);
    m.verification = verification as Manifest['verification'];
    writeManifest(artifact, m);
    const r = sphana(['deploy', artifact, '--to', join(parent, 'consumer')]);
    assert.equal(r.exitCode, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`error E_UNVERIFIED: .*${why}; deploy refuses it`));
    assert.deepEqual(readdirSync(parent).sort(), ['artifact']);
  }
  const ok = sphana(['deploy', artifact, '--to', join(parent, 'consumer'), '--allow-unverified']);
  assert.equal(ok.exitCode, 0, ok.stderr);
});

test('deploy --force never replaces a folder it did not make: unrelated files, cwd, home, the artifact and its ancestors', () => {
  const { parent, artifact } = copy('force');
  const mine = join(parent, 'mine');
  mkdirSync(join(mine, 'sub'), { recursive: true });
  writeFileSync(join(mine, 'thesis.tex'), 'years of work');
  writeFileSync(join(mine, 'sub', 'data.csv'), '1,2,3');
  const r = sphana(['deploy', artifact, '--to', mine, '--force']);
  assert.equal(r.exitCode, 3, r.stderr);
  assert.match(r.stderr, /error E_NOT_A_DEPLOYMENT: .*mine has no valid manifest\.json \(E_NO_MANIFEST\); --force replaces only a previous sphana deployment/);
  // A manifest copied in beside unrelated files does not make the folder ours either.
  cpSync(join(artifact, 'manifest.json'), join(mine, 'manifest.json'));
  const r2 = sphana(['deploy', artifact, '--to', mine, '--force']);
  assert.equal(r2.exitCode, 3, r2.stderr);
  assert.match(r2.stderr, /E_NOT_A_DEPLOYMENT: .*holds 2 files its manifest does not list \(sub\/data\.csv, thesis\.tex\)/);
  assert.deepEqual(tree(mine), ['manifest.json', 'sub', 'sub/data.csv', 'thesis.tex']);
  assert.equal(readFileSync(join(mine, 'thesis.tex'), 'utf8'), 'years of work');

  const home = join(parent, 'home');
  mkdirSync(home);
  writeFileSync(join(home, '.bashrc'), 'x');
  const places: Array<[string, string, string]> = [
    ['.', parent, 'is the current folder'],
    [home, ROOT, 'is the home folder'],
    [artifact, ROOT, 'is the artifact folder'],
    [parent, ROOT, 'holds the artifact folder'],
    [join(artifact, 'onnx', 'deployed'), ROOT, 'is inside the artifact folder'],
  ];
  const before = tree(parent);
  for (const [to, cwd, why] of places) {
    const run = spawnSync(process.execPath, [BIN, 'deploy', artifact, '--to', to, '--force'], { cwd, encoding: 'utf8', env: { ...process.env, HOME: home } });
    assert.equal(run.status, 2, `${to}: ${run.stderr}`);
    assert.match(run.stderr, new RegExp(`error E_UNSAFE_TARGET: --to .* ${why}; deploy refuses to write there`));
  }
  assert.deepEqual(tree(parent), before);
});

test('a deploy target held by a live run is refused at once naming its pid; a dead holder\'s lock is taken over', async () => {
  const { parent, artifact } = copy('lock');
  const holder: ChildProcess = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
  try {
    const start = Number(readFileSync(`/proc/${holder.pid}/stat`, 'utf8').split(') ')[1].split(' ')[19]);
    const boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    const lock = join(parent, '.consumer.sphana.lock');
    const host = (await import('node:os')).hostname();
    writeFileSync(lock, JSON.stringify({ pid: holder.pid, host, boot, start, command: 'sphana deploy int8', since: '2026-01-01T00:00:00.000Z', nonce: 'x' }));
    const r = sphana(['deploy', artifact, '--to', join(parent, 'consumer')]);
    assert.equal(r.exitCode, 4, r.stderr);
    assert.match(r.stderr, new RegExp(`^error E_LOCKED: .*consumer is in use by pid ${holder.pid} on .* \\(sphana deploy int8, since 2026-01-01T00:00:00\\.000Z\\)$`, 'm'));
    assert.deepEqual(readdirSync(parent).sort(), ['.consumer.sphana.lock', 'artifact']);
    // The same pid with another start time is a different process: the lock is stale.
    writeFileSync(lock, JSON.stringify({ pid: holder.pid, host, boot, start: start + 1, command: 'sphana deploy int8', since: 'x', nonce: 'x' }));
    const r2 = sphana(['deploy', artifact, '--to', join(parent, 'consumer')]);
    assert.equal(r2.exitCode, 0, r2.stderr);
    assert.deepEqual(readdirSync(parent).sort(), ['artifact', 'consumer']);
  } finally {
    holder.kill('SIGKILL');
  }
});

for (const [signal, code] of [['SIGTERM', 143], ['SIGHUP', 129]] as const) {
test(`${signal} during deploy exits ${code} and leaves no staging, no target and no lock; a dead run's staging is swept`, async () => {
  const { parent, artifact } = copy(signal);
  // A large listed file keeps the copy busy long enough to be interrupted.
  const big = Buffer.alloc(256 << 20, 7);
  addFile(artifact, 'onnx/special_tokens_map.json', big, 'special-tokens');
  const dead = join(parent, '.consumer.sphana-deploy-999999-deadbeef');
  mkdirSync(dead);
  writeFileSync(join(dead, 'llm_generator.onnx'), 'left by a killed run');
  const child = spawn(process.execPath, [BIN, 'deploy', artifact, '--to', join(parent, 'consumer')], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
  const deadline = Date.now() + 60_000;
  let seen = false;
  while (!seen && Date.now() < deadline) {
    seen = readdirSync(parent).some((e) => /^\.consumer\.sphana-deploy-\d+-[0-9a-f]{8}$/.test(e) && e !== '.consumer.sphana-deploy-999999-deadbeef' && existsSync(join(parent, e, 'special_tokens_map.json')));
    if (!seen) await new Promise((r) => setTimeout(r, 5));
  }
  assert.ok(seen, `no staging seen: ${stderr}`);
  child.kill(signal);
  assert.equal(await exited, code, stderr);
  assert.match(stderr, new RegExp(`error E_INTERRUPTED: interrupted \\(${signal}\\)`));
  assert.deepEqual(readdirSync(parent).sort(), ['artifact']);
});
}

test('a full disk (ENOSPC) is an environment error: exit 4, the hint names the folder, nothing left behind', () => {
  const { parent, artifact } = copy('enospc');
  const preload = new URL('../helpers/enospc-preload.js', import.meta.url).href;
  const r = spawnSync(process.execPath, ['--import', preload, BIN, 'deploy', artifact, '--to', join(parent, 'consumer'), '--json'], {
    cwd: ROOT, encoding: 'utf8', env: { ...process.env, SPHANA_TEST_ENOSPC_IN: '.consumer.sphana-deploy-' },
  });
  assert.equal(r.status, 4, r.stderr);
  const error = (JSON.parse(r.stdout) as { error: { code: string; hint: string } }).error;
  assert.equal(error.code, 'E_DISK_FULL');
  assert.equal(error.hint, `free space on the disk holding ${parent}, or write elsewhere`);
  assert.match(r.stderr, /^error E_DISK_FULL: no space left on the device \(ENOSPC in copyfile: .*\)$/m);
  assert.doesNotMatch(r.stderr, /internal error/);
  assert.deepEqual(readdirSync(parent).sort(), ['artifact']);
});
