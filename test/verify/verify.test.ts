import assert from 'node:assert/strict';
import { readFileSync, rmSync, truncateSync, copyFileSync, statSync, openSync, readSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { isSphanaError } from '../../src/errors.js';
import { type CheckResult, type VerificationReport, verifyArtifacts } from '../../src/verify/index.js';
import { GEMMA3_TOKENIZER, type Models, Scratch, buildModels, makeArtifact } from './fixture.js';

/**
 * sphana verify on a tiny but real artifact (tiny_llm with Llama 3's vocabulary and tokenizer,
 * an INT8 twin): a good folder passes; each kind of damage is detected by the check that owns
 * it, named, with the figure that shows it.
 */

let models: Models;
const scratch = new Scratch();
let good: string;
let ext: string;

before(async () => {
  models = buildModels();
  good = scratch.dir('good');
  await makeArtifact(models, good);
  ext = scratch.dir('ext');
  await makeArtifact(models, ext, { fp32: 'ext' });
});

after(() => scratch.cleanup(models?.root ?? ''));

function check(report: VerificationReport, name: CheckResult['name']): CheckResult {
  const c = report.checks.find((x) => x.name === name);
  assert.ok(c, `no ${name} check in the report`);
  return c;
}

function flipByte(path: string, at: number): void {
  const fd = openSync(path, 'r+');
  const b = Buffer.alloc(1);
  readSync(fd, b, 0, 1, at);
  b[0] ^= 0xff;
  writeSync(fd, b, 0, 1, at);
  closeSync(fd);
}

test('a good artifact passes every check, with figures, and the report is plain JSON', async () => {
  const seen: string[] = [];
  const report = await verifyArtifacts(good, { tokens: 8 }, (c) => seen.push(c.name));
  assert.deepEqual(report.failed, [], JSON.stringify(report.checks.filter((c) => !c.passed), null, 2));
  assert.equal(report.ok, true);
  assert.deepEqual(seen, ['files', 'structure', 'tokenizer', 'runtime', 'agreement', 'sample', 'speed']);
  assert.ok(report.checks.every((c) => c.status === 'passed' && c.passed && c.seconds >= 0 && c.message.length > 0));
  assert.deepEqual(report.precisions, ['fp32', 'int8']);
  assert.equal(report.promptIds, 'tokenizer');
  assert.deepEqual(JSON.parse(JSON.stringify(report)), report);

  const files = check(report, 'files').figures as { files: number; shaMismatch: unknown[] };
  assert.equal(files.files, 6);
  const tok = check(report, 'tokenizer').figures as { vocabSize: number; logitsVocab: number; specialIds: Array<{ id: number; special: boolean }> };
  assert.equal(tok.vocabSize, 128256);
  assert.equal(tok.logitsVocab, 128256);
  assert.deepEqual(tok.specialIds.map((s) => [s.id, s.special]), [[128000, true], [128001, true], [128009, true]]);
  const runtime = check(report, 'runtime').figures as Record<string, { maxAbsDiff: number; decodeSteps: number; presentProblems: string[] }>;
  assert.ok(runtime.fp32.maxAbsDiff <= 1e-3, `fp32 cached vs full ${runtime.fp32.maxAbsDiff}`);
  assert.equal(runtime.fp32.decodeSteps, 8);
  assert.deepEqual(runtime.int8.presentProblems, []);
  const agreement = check(report, 'agreement').figures as Record<string, { prompts: number; positions: number; top1Agreement: number; nearTieTop1: number; meanCosine: number; meanKl: number }>;
  // The corpus through Llama 3's tokenizer: 6 sequences, 544 tokens, every position compared.
  assert.deepEqual(report.qualityText, { source: 'corpus', corpusVersion: 1, sequences: 6, tokens: 544 });
  assert.equal(agreement.int8.prompts, 6);
  assert.equal(agreement.int8.positions, 544);
  assert.ok(agreement.int8.nearTieTop1 >= 0.98 && agreement.int8.meanCosine >= 0.99 && agreement.int8.meanKl <= 0.01, JSON.stringify(agreement.int8));
  // The quality section: perplexities of both on the corpus (538 scored tokens: one fewer per sequence), the int8 gate.
  const q = report.quality.int8!;
  assert.equal(q.text, 'corpus');
  assert.equal(q.positions, 544);
  assert.equal(q.scoredTokens, 538);
  assert.ok(q.ppl && q.ppl.fp32 > 1 && q.ppl.quantized > 1, JSON.stringify(q));
  assert.ok(Math.abs(q.ppl.delta - (q.ppl.quantized - q.ppl.fp32)) < 1e-3 * q.ppl.fp32);
  assert.equal(q.passed, true);
  assert.deepEqual(q.gate, report.thresholds.int8);
  assert.equal(q.meanKl, agreement.int8.meanKl);
  const sample = check(report, 'sample').figures as Record<string, { tokens: number[]; text: string }>;
  assert.equal(sample.fp32.tokens.length, 8);
  assert.equal(typeof sample.int8.text, 'string');
  const speed = check(report, 'speed').figures as Record<string, { decodeTokensPerSecond: number; peakRssBytes: number }>;
  assert.ok(speed.fp32.decodeTokensPerSecond > 0 && speed.int8.peakRssBytes > 0);
});

test("another model's tokenizer (Gemma 3's) fails the tokenizer check, saying it does not belong", async () => {
  const dir = scratch.copy(good, 'gemma-tokenizer');
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(GEMMA3_TOKENIZER, f), join(dir, 'onnx', f));
  const report = await verifyArtifacts(dir, { tokens: 4, precisions: ['fp32'] });
  assert.ok(report.failed.includes('tokenizer'));
  const tok = check(report, 'tokenizer');
  assert.match(tok.message, /^tokenizer has 262145 tokens but the model's logits have 128256: this tokenizer does not belong to this model/);
  assert.equal((tok.figures as { vocabSize: number }).vocabSize, 262145);
  // BOS 128000 is an ordinary Gemma token, not a special one.
  assert.ok((tok.figures as { problems: string[] }).problems.some((p) => /BOS id 128000 is '.*', not a special token/.test(p)));
  // The model itself is fine: the runtime check still runs (on fixed ids) and passes.
  assert.equal(report.promptIds, 'synthetic');
  assert.equal(check(report, 'runtime').status, 'passed');
});

test('an external-data model passes; truncating its .data fails the files check with the sizes', async () => {
  const fine = await verifyArtifacts(ext, { only: ['files', 'structure', 'runtime'], tokens: 4 });
  assert.equal(fine.ok, true, JSON.stringify(fine.checks));
  assert.ok((check(fine, 'files').figures as { files: number }).files === 7);

  const dir = scratch.copy(ext, 'truncated');
  const data = join(dir, 'onnx/llm_generator.onnx.data');
  const full = statSync(data).size;
  truncateSync(data, Math.floor(full / 2));
  const report = await verifyArtifacts(dir, { only: ['files', 'runtime'], tokens: 4 });
  assert.deepEqual(report.failed, ['files']);
  const files = check(report, 'files');
  assert.deepEqual((files.figures as { sizeMismatch: unknown[] }).sizeMismatch, [{ path: 'onnx/llm_generator.onnx.data', expected: full, actual: Math.floor(full / 2) }]);
  assert.match(files.message, /llm_generator\.onnx\.data is \d+ bytes, the manifest records \d+ \(truncated\)/);
  // fp32 cannot be run (prerequisite missing): not run, not blamed; INT8 still runs.
  const runtime = check(report, 'runtime').figures as Record<string, { skipped?: string; maxAbsDiff?: number }>;
  assert.match(runtime.fp32.skipped ?? '', /llm_generator\.onnx\.data' has \d+ bytes, tensors need \d+/);
  assert.ok(typeof runtime.int8.maxAbsDiff === 'number');
});

test('one flipped byte in a model fails the files check (sha256)', async () => {
  const dir = scratch.copy(good, 'flipped');
  const model = join(dir, 'onnx/llm_generator.int8.onnx');
  flipByte(model, Math.floor(statSync(model).size / 2));
  const report = await verifyArtifacts(dir, { only: ['files'] });
  assert.deepEqual(report.failed, ['files']);
  const mismatch = (check(report, 'files').figures as { shaMismatch: Array<{ path: string; expected: string; actual: string }> }).shaMismatch;
  assert.equal(mismatch.length, 1);
  assert.equal(mismatch[0].path, 'onnx/llm_generator.int8.onnx');
  assert.notEqual(mismatch[0].actual, mismatch[0].expected);
});

test('a manifest with the wrong head dim fails structure, and no runtime check sizes a cache from it (skipped)', async () => {
  const dir = scratch.copy(good, 'head-dim');
  const path = join(dir, 'manifest.json');
  const manifest = JSON.parse(readFileSync(path, 'utf8'));
  manifest.kvCache.headDim = 32;
  (await import('node:fs')).writeFileSync(path, JSON.stringify(manifest));
  const report = await verifyArtifacts(dir, { only: ['structure', 'runtime'], tokens: 2, precisions: ['fp32'] });
  assert.deepEqual(report.failed, ['structure']);
  assert.deepEqual(report.skipped, ['runtime']);
  const structure = check(report, 'structure');
  assert.match(structure.message, /the manifest says head dim 32, config\.json says 16/);
  assert.ok((structure.figures as { mismatches: string[] }).mismatches.some((m) => m === 'the manifest says head dim 32, onnx/llm_generator.onnx has 16'));
  assert.equal((structure.figures as { manifest: { headDim: number } }).manifest.headDim, 32);
  assert.match(check(report, 'runtime').message, /^skipped: the structure check failed, so the manifest's sizes are not trusted \(the manifest says head dim 32, config\.json says 16/);
});

test('an INT8 model with zeroed weights fails the agreement check on its figures', async () => {
  const dir = scratch.dir('zeroed');
  await makeArtifact(models, dir, { int8: 'zeroed' });
  const report = await verifyArtifacts(dir, { only: ['agreement'] });
  assert.deepEqual(report.failed, ['agreement']);
  const a = check(report, 'agreement');
  const f = (a.figures as Record<string, { meanCosine: number; meanKl: number; positions: number }>).int8;
  assert.ok(f.meanCosine < 0.95, `cosine ${f.meanCosine}`);
  assert.equal(f.positions, 544);
  assert.match(a.message, /^int8 vs fp32 on the corpus \(544 positions\): .*cosine 0\.\d+ < 0\.98/);
  assert.equal(report.quality.int8?.passed, false);
  // Looser thresholds are honoured.
  const loose = await verifyArtifacts(dir, { only: ['agreement'], thresholds: { cosine: 0.5, kl: 1 } });
  assert.equal(loose.ok, true);
});

test('a cache whose key and value presents are swapped (right shapes) fails the runtime check', async () => {
  const dir = scratch.dir('swapped');
  await makeArtifact(models, dir, { fp32: 'swapped', int8: null });
  const report = await verifyArtifacts(dir, { only: ['runtime'], tokens: 4 });
  assert.deepEqual(report.failed, ['runtime']);
  const f = (check(report, 'runtime').figures as Record<string, { maxAbsDiff: number; tolerance: number; presentProblems: string[] }>).fp32;
  assert.deepEqual(f.presentProblems, []);
  assert.ok(f.maxAbsDiff > 100 * f.tolerance, JSON.stringify(f));
  assert.match(check(report, 'runtime').message, /the KV cache is not wired correctly/);
});

test('a missing file fails the files check; checks needing it are skipped, the others still run', async () => {
  const dir = scratch.copy(good, 'missing');
  rmSync(join(dir, 'onnx/llm_generator.int8.onnx'));
  const report = await verifyArtifacts(dir, { tokens: 2 });
  assert.deepEqual(report.failed, ['files']);
  assert.deepEqual((check(report, 'files').figures as { missing: string[] }).missing, ['onnx/llm_generator.int8.onnx']);
  assert.equal(check(report, 'tokenizer').status, 'passed');
  assert.equal(check(report, 'runtime').status, 'passed');
  assert.match(check(report, 'runtime').message, /int8 not run \(onnx\/llm_generator\.int8\.onnx is missing\)/);
  assert.equal(check(report, 'agreement').status, 'skipped');
  assert.equal(report.ok, false);
});

test('bad input is an InputError (exit 3) before any check', async () => {
  const cases: Array<[string, string]> = [[join(scratch.root, 'nope'), 'E_NO_ARTIFACT'], [scratch.root, 'E_NO_MANIFEST']];
  const bad = scratch.dir('bad-manifest');
  (await import('node:fs')).mkdirSync(bad);
  (await import('node:fs')).writeFileSync(join(bad, 'manifest.json'), '{"manifestVersion": 1}');
  cases.push([bad, 'E_BAD_MANIFEST']);
  for (const [path, code] of cases) {
    await assert.rejects(verifyArtifacts(path), (e: unknown) => isSphanaError(e) && e.code === code && e.exitCode === 3);
  }
  await assert.rejects(verifyArtifacts(good, { precisions: ['int4'] }), (e: unknown) => isSphanaError(e) && e.code === 'E_PRECISION_NOT_IN_ARTIFACT');
});
