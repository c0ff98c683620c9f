import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { findPreset, parameterCount } from '../../src/models/index.js';
import { type PlanFacts, MIN_PEAK_MEMORY, PEAK_MEMORY_RATIO, QUANTIZED_RATIO, planExport } from '../../src/pipeline/export-plan.js';
import { sphana } from '../helpers/cli.js';

const root = mkdtempSync(join(tmpdir(), 'sphana-dry-run-'));
after(() => rmSync(root, { recursive: true, force: true }));

const GiB = 2 ** 30;
function facts(over: Partial<PlanFacts> = {}, options: Partial<PlanFacts['options']> = {}): PlanFacts {
  return {
    options: { model: 'llama-3.2-1b', synthetic: 'full', out: root, artifactVersion: '0.1.0', precision: 'int8', strategy: 'auto', exporter: 'dynamo', seed: 0, force: false, verify: true, ...options },
    dir: join(root, '0.1.0'),
    weights: { from: 'synthetic', dir: null, present: true, detail: 'random full weights' },
    config: findPreset('llama-3.2-1b').config,
    environment: { dir: '/env', healthy: true },
    upToDate: {},
    protoLimitBytes: 2 ** 31,
    machine: { freeDiskBytes: 100 * GiB, totalMemoryBytes: 24 * GiB, availableMemoryBytes: 20 * GiB },
    ...over,
  };
}

test('the plan estimates from the parameter count and the measured ratios (Llama-3.2-1B: 4.94 GB fp32, as bench/results/export.md measured 4.95 GB)', () => {
  const plan = planExport(facts());
  const params = parameterCount(findPreset('llama-3.2-1b').config);
  assert.equal(plan.parameters, params);
  assert.ok(Math.abs(plan.estimate.fp32ModelBytes - 4.95e9) / 4.95e9 < 0.01, `${plan.estimate.fp32ModelBytes}`);
  assert.equal(plan.estimate.quantizedModelBytes, Math.ceil(params * 4 * QUANTIZED_RATIO));
  assert.equal(plan.estimate.peakMemoryBytes, Math.ceil(params * 4 * PEAK_MEMORY_RATIO));
  assert.equal(plan.estimate.diskBytes, params * 4 * 2 + plan.estimate.quantizedModelBytes, 'synthetic: weights + fp32 + int8');
  assert.deepEqual(plan.steps.map((s) => [s.step, s.action]), [['environment', 'skip'], ['weights', 'run'], ['export', 'run'], ['quantize', 'run'], ['assemble', 'run'], ['manifest', 'run'], ['verify', 'run']]);
  assert.deepEqual(plan.strategyOrder, ['direct', 'external-data', 'embedding-split']);
  // Gemma-2-2B's INT8 twin (about 2.6 GB) would pass protobuf's 2 GiB limit: direct is refused up front.
  assert.match(planExport(facts({ config: findPreset('gemma-2-2b').config })).strategyOrder[0], /^direct \(refused up front/);
  assert.equal(plan.ok, true);
});

test('the plan fails when the machine lacks memory or disk, and says which', () => {
  const low = planExport(facts({ machine: { freeDiskBytes: 100 * GiB, totalMemoryBytes: 8 * GiB, availableMemoryBytes: 6 * GiB } }));
  assert.equal(low.ok, false);
  assert.equal(low.machine.enoughMemory, false);
  assert.match(low.problems.join(' '), /not enough memory: peaks near 6\.2\d GiB, 6\.00 GiB available/);
  const disk = planExport(facts({ machine: { freeDiskBytes: 5 * GiB, totalMemoryBytes: 24 * GiB, availableMemoryBytes: 20 * GiB } }));
  assert.equal(disk.ok, false);
  assert.equal(disk.machine.enoughDisk, false);
  assert.match(disk.problems[0], /not enough disk/);
  const tiny = planExport(facts({ config: { ...findPreset('smollm2-135m').config, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, vocab_size: 512 } }));
  assert.equal(tiny.estimate.peakMemoryBytes, MIN_PEAK_MEMORY, 'a tiny model still needs the fixed cost');
});

test('resume: up-to-date steps are skipped (weights too, when export and assemble are); --force runs them', () => {
  const upToDate = { weights: true, export: true, quantize: true, assemble: true, verify: true };
  const plan = planExport(facts({ upToDate }));
  assert.deepEqual(plan.steps.filter((s) => s.action === 'run').map((s) => s.step), ['manifest']);
  const forced = planExport(facts({ upToDate }, { force: true }));
  assert.deepEqual(forced.steps.filter((s) => s.action === 'skip').map((s) => s.step), ['environment']);
  const int4 = planExport(facts({ upToDate: { ...upToDate, quantize: false, verify: false } }, { precision: 'int4', strategy: 'embedding-split' }));
  assert.deepEqual(int4.steps.filter((s) => s.action === 'run').map((s) => s.step), ['quantize', 'manifest', 'verify']);
  assert.deepEqual(int4.strategyOrder, ['embedding-split']);
});

test('sphana export --dry-run --json prints the plan, writes nothing, and exits 0 on this machine for a tiny model', () => {
  const out = join(root, 'out');
  const r = sphana(['export', 'qwen2.5-0.5b', '--synthetic', 'tiny', '--out', out, '--dry-run', '--json']);
  assert.equal(r.exitCode, 0, r.stderr);
  const plan = JSON.parse(r.stdout) as ReturnType<typeof planExport>;
  assert.equal(plan.model, 'qwen2.5-0.5b');
  assert.equal(plan.weights.from, 'synthetic');
  assert.ok(plan.parameters > 0 && plan.parameters < 50e6, `${plan.parameters}`);
  assert.equal(plan.steps.find((s) => s.step === 'export')?.action, 'run');
  assert.ok(typeof plan.machine.availableMemoryBytes === 'number' && plan.machine.totalMemoryBytes > 0);
  assert.equal(existsSync(out), false, 'a dry run creates nothing');
  const text = sphana(['export', 'qwen2.5-0.5b', '--synthetic', 'tiny', '--out', out, '--dry-run']);
  assert.equal(text.exitCode, 0);
  assert.match(text.stdout, /steps:\n {2}environment/);
  assert.match(text.stdout, /estimate: {3}fp32 model/);
});

test('sphana export --dry-run --offline of a preset whose weights are absent exits 1 and says so', () => {
  const r = sphana(['export', 'gemma-2-2b', '--offline', '--out', join(root, 'out2'), '--dry-run', '--json'], { HF_HUB_CACHE: join(root, 'no-cache'), HF_HOME: join(root, 'no-home') });
  assert.equal(r.exitCode, 1, r.stderr);
  const plan = JSON.parse(r.stdout) as ReturnType<typeof planExport>;
  assert.equal(plan.weights.present, false);
  assert.match(plan.problems.join(' '), /--offline/);
});
