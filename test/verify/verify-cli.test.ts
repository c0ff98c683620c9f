import assert from 'node:assert/strict';
import { closeSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { ANSI, sphana } from '../helpers/cli.js';
import { type Models, Scratch, buildModels, makeArtifact } from './fixture.js';

/** `sphana verify` as a user runs it: exit 0 verified, 1 a check failed, 3 bad input. */

let models: Models;
const scratch = new Scratch();
let good: string;

before(async () => {
  models = buildModels();
  good = scratch.dir('good');
  await makeArtifact(models, good);
});

after(() => scratch.cleanup(models?.root ?? ''));

test('verify --json on a good artifact: one JSON object on stdout, exit 0', () => {
  const r = sphana(['verify', '--json', '--tokens', '4', '--kl', '0.05', good]);
  assert.equal(r.exitCode, 0, r.stderr);
  const report = JSON.parse(r.stdout) as {
    ok: boolean; checks: Array<{ name: string; passed: boolean }>; failed: string[];
    thresholds: Record<string, { top1: number; kl: number }>; quality: Record<string, { positions: number; ppl: { fp32: number; quantized: number } | null; passed: boolean }>;
  };
  assert.equal(report.ok, true);
  assert.deepEqual(report.checks.map((c) => c.name), ['files', 'structure', 'tokenizer', 'runtime', 'agreement', 'sample', 'speed']);
  assert.doesNotMatch(r.stdout, ANSI);
  // The int8 gate with the --kl override; the quality section per precision.
  assert.deepEqual([report.thresholds.int8.top1, report.thresholds.int8.kl], [0.97, 0.05]);
  assert.equal(report.quality.int8.positions, 544);
  assert.equal(report.quality.int8.passed, true);
  assert.ok(report.quality.int8.ppl!.fp32 > 1);
});

test('verify prints the quality table: perplexity of fp32 and int8 on the corpus, Δppl, KL, top-1', () => {
  const r = sphana(['verify', '--tokens', '2', '--top1', '0.5', good]);
  assert.equal(r.exitCode, 0, r.stderr);
  assert.match(r.stdout, /quality on the corpus \(v1: 6 sequences, 544 tokens, teacher-forced\) against fp32:/);
  assert.match(r.stdout, /precision +ppl +Δppl +KL mean +KL max +top-1 +top-1 near-tie +gate/);
  assert.match(r.stdout, /\n +fp32 +\d+\.\d{3}\n +int8 +\d+\.\d{3} +[+-]\d+\.\d{3} \([+-]\d+\.\d{2}%\) +\d\.\d{5} +\d\.\d{3} +\d\.\d{3} +\d\.\d{3} \(ε 0\.5\) +PASS/);
  assert.match(r.stdout, /thresholds: int8 top-1 ≥ 0\.5 \(near-ties ≤ 0\.5 nats\), cosine ≥ 0\.98, KL ≤ 0\.05/);
});

test('a failed check exits 1 and names it; the table goes to stdout', () => {
  const dir = scratch.copy(good, 'flipped');
  const fd = openSync(join(dir, 'onnx/generation_config.json'), 'r+');
  writeSync(fd, ' ', 0);
  closeSync(fd);
  const json = sphana(['verify', '--json', '--precision', 'fp32', '--tokens', '2', dir]);
  assert.equal(json.exitCode, 1, json.stderr);
  const report = JSON.parse(json.stdout) as { ok: boolean; failed: string[] };
  assert.deepEqual(report.failed, ['files']);
  assert.match(json.stderr, /E_VERIFY_FAILED: verification failed: files/);

  const human = sphana(['verify', '--precision', 'fp32', '--tokens', '2', '--top1', '0.5', dir]);
  assert.equal(human.exitCode, 1);
  assert.match(human.stdout, /^files +FAIL .*generation_config\.json has sha256/m);
  assert.match(human.stdout, /^runtime +PASS /m);
  assert.match(human.stdout, /thresholds: none \(no quantized model\)/);
  assert.doesNotMatch(human.stdout + human.stderr, ANSI);
});

test('bad input exits 3 with a one-line error; bad flags exit 2', () => {
  const missing = sphana(['verify', '--json', join(scratch.root, 'no-such-dir')]);
  assert.equal(missing.exitCode, 3);
  assert.equal((JSON.parse(missing.stdout) as { error: { code: string } }).error.code, 'E_NO_ARTIFACT');
  const noManifest = sphana(['verify', scratch.root]);
  assert.equal(noManifest.exitCode, 3);
  assert.match(noManifest.stderr, /^error E_NO_MANIFEST: .* has no manifest\.json$/m);
  assert.equal(sphana(['verify', '--tokens', 'many', good]).exitCode, 2);
  assert.equal(sphana(['verify']).exitCode, 2);
});
