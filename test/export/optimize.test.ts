import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Manifest } from '../../src/manifest/schema.js';
import { headDimOf, kvHeadsOf, type HfConfig } from '../../src/models/index.js';
import { inspectFile } from '../../src/onnx/summary.js';
import { sphana } from '../helpers/cli.js';

/** `export --optimize ort`: fused fp32 (GroupQueryAttention, SkipSimplifiedLayerNormalization), parity-gated, quantized, verified. */
let out: string;
let dir: string;
let manifest: Manifest;
let summary: { steps: Array<{ step: string; skipped: boolean; detail?: string }> };

before(() => {
  out = mkdtempSync(join(tmpdir(), 'sphana-optimize-'));
  dir = join(out, '0.1.0');
  const r = sphana(['export', 'smollm2-135m', '--synthetic', 'tiny', '--optimize', 'ort', '--out', out, '--json']);
  assert.equal(r.exitCode, 0, r.stderr);
  summary = JSON.parse(r.stdout);
  manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as Manifest;
});
after(() => rmSync(out, { recursive: true, force: true }));

test('the optimize step runs between export and quantize and fuses every layer', () => {
  const steps = summary.steps.map((s) => s.step);
  assert.ok(steps.indexOf('export') < steps.indexOf('optimize') && steps.indexOf('optimize') < steps.indexOf('quantize'), steps.join(','));
  const o = manifest.optimization!;
  assert.equal(o.applied, true, o.reason ?? '');
  assert.equal(o.mode, 'ort');
  const layers = manifest.kvCache.layers;
  assert.equal(o.fusionCounts.gqa, layers);
  assert.equal(o.fusionCounts.skip_rms_normalization, 2 * layers);
  assert.equal(o.untiedLmHead, true);
  assert.ok((o.parity!.maxAbsDiff as number) <= 1e-3);
  const fp32 = inspectFile(join(dir, 'onnx/llm_generator.onnx'));
  assert.equal(fp32.ops['com.microsoft.GroupQueryAttention'], layers);
  assert.equal(fp32.ops['com.microsoft.SkipSimplifiedLayerNormalization'], 2 * layers);
  assert.equal(fp32.ops['com.microsoft.FusedMatMul'], undefined);
});

test('the fused graphs keep concrete KV heads and head dim, and the manifest lists the non-standard ops', () => {
  const config = JSON.parse(readFileSync(join(dir, 'onnx/config.json'), 'utf8')) as HfConfig;
  for (const m of manifest.models) {
    const s = inspectFile(join(dir, m.path));
    assert.equal(s.kvCache!.numKvHeads, kvHeadsOf(config), m.path);
    assert.equal(s.kvCache!.headDim, headDimOf(config), m.path);
    const past = s.inputs.find((i) => i.name === 'past_key_values.0.key')!;
    assert.deepEqual(past.shape, ['batch_size', kvHeadsOf(config), 'past_sequence_length', headDimOf(config)]);
    assert.ok(m.requiredOps.includes('com.microsoft.GroupQueryAttention'), `${m.path}: ${m.requiredOps}`);
    assert.ok(m.requiredOps.includes('com.microsoft.SkipSimplifiedLayerNormalization'), `${m.path}: ${m.requiredOps}`);
    assert.ok(m.requiredOps.every((op) => op.startsWith('com.microsoft.')), m.requiredOps.join(','));
  }
});

test('the untied LM head is quantized with the rest: no MatMul left on a float constant in the INT8 model', () => {
  const int8 = manifest.models.find((m) => m.precision === 'int8')!;
  const q = inspectFile(join(dir, int8.path)).quantization;
  assert.equal(q.quantized, true);
  assert.deepEqual(q.floatConstantMatMuls, []);
});

test('verify passed on the fused artifacts (onnxruntime-node runs them), and a rerun skips every step', () => {
  assert.equal((manifest.verification as { ok: boolean }).ok, true);
  const r = sphana(['export', 'smollm2-135m', '--synthetic', 'tiny', '--optimize', 'ort', '--out', out, '--json', '--no-verify']);
  assert.equal(r.exitCode, 0, r.stderr);
  const again = JSON.parse(r.stdout) as typeof summary;
  for (const s of again.steps.filter((x) => x.step !== 'manifest')) assert.equal(s.skipped, true, s.step);
});

test('verify fails when the manifest hides a non-standard op the graph needs', () => {
  const path = join(dir, 'manifest.json');
  const original = readFileSync(path, 'utf8');
  try {
    const tampered = JSON.parse(original) as Manifest;
    tampered.models[0].requiredOps = ['com.microsoft.SkipSimplifiedLayerNormalization'];
    writeFileSync(path, JSON.stringify(tampered));
    const r = sphana(['verify', dir, '--json']);
    assert.equal(r.exitCode, 1, r.stderr);
    const report = JSON.parse(r.stdout) as { checks: Array<{ name: string; passed: boolean; figures: { mismatches?: string[] } }> };
    const structure = report.checks.find((c) => c.name === 'structure')!;
    assert.equal(structure.passed, false);
    assert.ok(structure.figures.mismatches!.some((m) => m.includes('com.microsoft.GroupQueryAttention')), JSON.stringify(structure.figures.mismatches));
  } finally {
    writeFileSync(path, original);
  }
});

test('--optimize takes none or ort', () => {
  const r = sphana(['export', 'smollm2-135m', '--synthetic', 'tiny', '--optimize', 'fast', '--out', out]);
  assert.equal(r.exitCode, 2);
  assert.match(r.stderr, /^error E_USAGE: option '--optimize <mode>' argument 'fast' is invalid\. Allowed choices are none, ort\.$/m);
});
