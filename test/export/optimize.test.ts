import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Manifest } from '../../src/manifest/schema.js';
import { headDimOf, kvHeadsOf, type HfConfig } from '../../src/models/index.js';
import { inspectFile } from '../../src/onnx/summary.js';
import { sphana } from '../helpers/cli.js';

/**
 * The default export (--optimize ort): the fused template layer stamped per layer (GroupQueryAttention,
 * SkipSimplifiedLayerNormalization), parity-gated inside the export step, quantized, verified; and
 * `--optimize none`, the unfused graph.
 */
let out: string;
let dir: string;
let manifest: Manifest;
let summary: { steps: Array<{ step: string; skipped: boolean; detail?: string }> };

before(() => {
  out = mkdtempSync(join(tmpdir(), 'sphana-optimize-'));
  dir = join(out, '0.1.0');
  const r = sphana(['export', 'smollm2-135m', '--synthetic', 'tiny', '--out', out, '--json']);
  assert.equal(r.exitCode, 0, r.stderr);
  summary = JSON.parse(r.stdout);
  manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as Manifest;
});
after(() => rmSync(out, { recursive: true, force: true }));

test('by default the export step fuses every layer (a stamped fused layer), with no separate optimize step', () => {
  const steps = summary.steps.map((s) => s.step);
  assert.ok(!steps.includes('optimize'), steps.join(','));
  assert.match(summary.steps.find((s) => s.step === 'export')!.detail ?? '', /fused \(stamped\)/);
  const o = manifest.optimization!;
  assert.equal(o.applied, true, o.reason ?? '');
  assert.equal(o.mode, 'ort');
  assert.equal(o.method, 'stamped');
  const layers = manifest.kvCache.layers;
  assert.equal(o.fusionCounts['com.microsoft.GroupQueryAttention'], layers);
  assert.equal(o.fusionCounts['com.microsoft.SkipSimplifiedLayerNormalization'], 2 * layers);
  assert.ok((o.parity!.maxAbsDiff as number) <= 1e-3);
  assert.equal(o.parity!.top1Agreement, 1);
  const stamp = (manifest.parity as { stamp: { applied: boolean; templateLayers: number[] } }).stamp;
  assert.equal(stamp.applied, true);
  assert.deepEqual(stamp.templateLayers, [0, 1]);
  const fp32 = inspectFile(join(dir, 'onnx/llm_generator.onnx'));
  assert.equal(fp32.ops['com.microsoft.GroupQueryAttention'], layers);
  assert.equal(fp32.ops['com.microsoft.SkipSimplifiedLayerNormalization'], 2 * layers);
  // the first layer's input norm has no residual add before it
  assert.equal(fp32.ops.SimplifiedLayerNormalization, 1);
  // the tied head reads the one embedding table (FusedMatMul transB=1): no transposed copy
  assert.equal(fp32.ops['com.microsoft.FusedMatMul'], 1);
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

test('the tied LM head is quantized with the table it shares with the embedding: no float MatMul left in the INT8 model', () => {
  const int8 = manifest.models.find((m) => m.precision === 'int8')!;
  const q = inspectFile(join(dir, int8.path)).quantization;
  assert.equal(q.quantized, true);
  assert.deepEqual(q.floatConstantMatMuls, []);
  assert.equal(manifest.quantization?.head?.quantized, true);
  assert.equal(manifest.quantization?.head?.tied, true);
});

test('verify passed on the fused artifacts (onnxruntime-node runs them), and a rerun skips every step', () => {
  assert.equal((manifest.verification as { ok: boolean }).ok, true);
  const r = sphana(['export', 'smollm2-135m', '--synthetic', 'tiny', '--optimize', 'ort', '--out', out, '--json', '--no-verify']);
  assert.equal(r.exitCode, 0, r.stderr);
  const again = JSON.parse(r.stdout) as typeof summary;
  for (const s of again.steps.filter((x) => x.step !== 'manifest')) assert.equal(s.skipped, true, s.step);
});

test('--optimize none re-exports the unfused graph: no com.microsoft op in either model, no optimization record', () => {
  const other = mkdtempSync(join(tmpdir(), 'sphana-optimize-none-'));
  try {
    const r = sphana(['export', 'smollm2-135m', '--synthetic', 'tiny', '--optimize', 'none', '--out', other, '--json', '--no-verify']);
    assert.equal(r.exitCode, 0, r.stderr);
    const m = JSON.parse(readFileSync(join(other, '0.1.0', 'manifest.json'), 'utf8')) as Manifest;
    assert.equal(m.optimization ?? null, null);
    for (const model of m.models) assert.deepEqual(model.requiredOps.filter((op) => op !== 'com.microsoft.MatMulNBits' && op !== 'com.microsoft.GatherBlockQuantized'), [], model.path);
    const fp32 = inspectFile(join(other, '0.1.0', 'onnx/llm_generator.onnx'));
    assert.equal(fp32.ops['com.microsoft.GroupQueryAttention'], undefined);
  } finally {
    rmSync(other, { recursive: true, force: true });
  }
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
