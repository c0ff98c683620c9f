import type { Output, Step } from '../cli/output.js';
import { UsageError } from '../errors.js';
import { type ExportOptions, runExport } from '../pipeline/export-pipeline.js';
import { type QuantFlags, parseQuantFlags } from '../quantize/cli-options.js';
import { STRATEGIES, type StrategyChoice } from '../quantize/run.js';
import { OPTIMIZE_MODES } from '../pipeline/optimize-step.js';
import { bytes } from './inspect-render.js';
import type { ExportPlan } from '../pipeline/export-plan.js';

export interface ExportCliOptions extends QuantFlags {
  synthetic?: string;
  weights?: string;
  revision?: string;
  offline?: boolean;
  out: string;
  artifactVersion: string;
  precision: string;
  strategy: string;
  exporter: string;
  optimize: string;
  seed: string;
  force?: boolean;
  verify: boolean;
  threads?: string;
  dryRun?: boolean;
}

function choice<T extends string>(value: string, allowed: readonly T[], flag: string): T {
  if (!(allowed as readonly string[]).includes(value)) throw new UsageError(`${flag} must be one of ${allowed.join(', ')}`);
  return value as T;
}

/** `sphana export MODEL`: the main job, export → quantize → verify → manifest. */
export async function run([model]: string[], o: ExportCliOptions, out: Output): Promise<number> {
  if (!/^\d+$/.test(o.seed)) throw new UsageError('--seed must be a non-negative integer');
  const open = new Map<string, Step>();
  const implicit = new Set<string>();
  const closeImplicit = () => {
    for (const step of implicit) { open.get(step)?.succeed(); open.delete(step); }
    implicit.clear();
  };
  const options: ExportOptions = {
    model,
    synthetic: o.synthetic === undefined ? undefined : choice(o.synthetic, ['tiny', 'full'] as const, '--synthetic'),
    weights: o.weights,
    revision: o.revision,
    offline: o.offline,
    out: o.out,
    artifactVersion: o.artifactVersion,
    precision: choice(o.precision, ['int8', 'int4'] as const, '--precision'),
    quant: parseQuantFlags(choice(o.precision, ['int8', 'int4'] as const, '--precision'), o),
    strategy: choice(o.strategy, ['auto', ...STRATEGIES] as const, '--strategy') as StrategyChoice,
    exporter: choice(o.exporter, ['dynamo', 'torchscript'] as const, '--exporter'),
    optimize: choice(o.optimize, OPTIMIZE_MODES, '--optimize'),
    seed: Number(o.seed),
    force: !!o.force,
    verify: o.verify,
    threads: o.threads ? Number(o.threads) : undefined,
    events: {
      start: (step, label) => { closeImplicit(); open.set(step, out.step(label)); },
      // Progress before its step started (the weights download happens while the source is resolved): a step of its own.
      progress: (step, message) => {
        if (!open.has(step)) { open.set(step, out.step(step === 'weights' ? 'weights (download)' : step)); implicit.add(step); }
        open.get(step)?.update(message);
      },
      done: (step, info) => { open.get(step)?.succeed(info.skipped ? 'skipped: up to date' : info.detail); open.delete(step); },
      failed: (step) => { open.get(step)?.fail(); open.delete(step); },
    },
  };
  if (o.dryRun) {
    const { gatherPlanFacts, planExport } = await import('../pipeline/export-plan.js');
    const plan = planExport(await gatherPlanFacts(options));
    out.json(JSON.stringify(plan));
    if (!out.options.json) out.result(renderPlan(plan));
    return plan.ok ? 0 : 1;
  }
  const summary = await runExport(options).finally(closeImplicit);
  out.json(JSON.stringify(summary));
  if (!out.options.json) {
    const width = Math.max(...summary.steps.map((s) => s.step.length));
    out.result(`artifacts: ${summary.dir}`);
    out.result(`kv cache: ${summary.kvCache.layers} layers × ${summary.kvCache.numKvHeads} kv heads × ${summary.kvCache.headDim} head dim (${summary.kvCache.pastKeyTemplate})`);
    out.result('step timings:');
    for (const s of summary.steps) out.result(`  ${s.step.padEnd(width)}  ${s.skipped ? 'skipped' : `${s.seconds.toFixed(1)}s`.padStart(7)}`);
    out.result(`  ${'total'.padEnd(width)}  ${`${summary.steps.reduce((n, s) => n + s.seconds, 0).toFixed(1)}s`.padStart(7)}`);
    out.result('files:');
    for (const f of summary.files) out.result(`  ${f.path.padEnd(40)} ${bytes(f.bytes).padStart(10)}  ${f.sha256.slice(0, 12)}`);
  }
  return 0;
}

const gib = (n: number) => `${(n / 2 ** 30).toFixed(2)} GiB`;

/** The dry-run plan as people read it. */
export function renderPlan(plan: ExportPlan): string {
  const e = plan.estimate;
  const m = plan.machine;
  const width = Math.max(...plan.steps.map((s) => s.step.length));
  const lines = [
    `plan for ${plan.model} → ${plan.dir}`,
    `weights:    ${plan.weights.detail}${plan.weights.present ? '' : ' (not on this machine yet)'}`,
    `parameters: ${plan.parameters.toLocaleString('en-US')} (from the config)`,
    `precision:  ${plan.precision}; strategy order: ${plan.strategyOrder.join(' → ')}`,
    'steps:',
    ...plan.steps.map((s) => `  ${s.step.padEnd(width)}  ${s.action === 'skip' ? 'skip' : 'run '}  ${s.why}`),
    `estimate:   fp32 model ${gib(e.fp32ModelBytes)}, ${plan.precision} ${gib(e.quantizedModelBytes)} (${(e.ratios.quantized * 100).toFixed(0)} %); disk at --out ${gib(e.diskBytes)}; peak memory ${gib(e.peakMemoryBytes)} (${e.ratios.peakMemory}× fp32, bench/results/export.md)`,
    `machine:    ${m.freeDiskBytes === null ? 'free disk unknown' : `${gib(m.freeDiskBytes)} free disk`} (${m.enoughDisk === false ? 'NOT enough' : m.enoughDisk ? 'enough' : '?'}); memory ${gib(m.availableMemoryBytes)} available of ${gib(m.totalMemoryBytes)} (${m.enoughMemory ? 'enough' : 'NOT enough'})`,
  ];
  for (const p of plan.problems) lines.push(`problem:    ${p}`);
  return lines.join('\n');
}
