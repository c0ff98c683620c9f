import type { Output, Step } from '../cli/output.js';
import { type ExportOptions, runExport } from '../pipeline/export-pipeline.js';
import { type QuantFlags, parseQuantFlags } from '../quantize/cli-options.js';
import type { Exporter, OptimizeMode, QuantizePrecision, StrategyChoice, SyntheticSize } from '../vocabulary.js';
import { bytes } from './inspect-render.js';
import type { ExportPlan } from '../pipeline/export-plan.js';

/** As commander hands them over, each flag parsed and checked (src/cli/main.ts). */
export interface ExportCliOptions extends QuantFlags {
  synthetic?: SyntheticSize;
  weights?: string;
  revision?: string;
  offline?: boolean;
  out: string;
  artifactVersion: string;
  precision: QuantizePrecision;
  strategy: StrategyChoice;
  exporter: Exporter;
  optimize: OptimizeMode;
  seed: number;
  force?: boolean;
  verify: boolean;
  threads?: number;
  dryRun?: boolean;
}

/** `sphana export MODEL`: the main job, export → quantize → verify → manifest. */
export async function run([model]: string[], o: ExportCliOptions, out: Output): Promise<number> {
  const open = new Map<string, Step>();
  const implicit = new Set<string>();
  const closeImplicit = () => {
    for (const step of implicit) { open.get(step)?.succeed(); open.delete(step); }
    implicit.clear();
  };
  const options: ExportOptions = {
    model,
    synthetic: o.synthetic,
    weights: o.weights,
    revision: o.revision,
    offline: o.offline,
    out: o.out,
    artifactVersion: o.artifactVersion,
    precision: o.precision,
    quant: parseQuantFlags(o.precision, o),
    strategy: o.strategy,
    exporter: o.exporter,
    optimize: o.optimize,
    seed: o.seed,
    force: !!o.force,
    verify: o.verify,
    threads: o.threads,
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
