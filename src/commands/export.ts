import type { Output, Step } from '../cli/output.js';
import { UsageError } from '../errors.js';
import { type ExportOptions, runExport } from '../pipeline/export-pipeline.js';
import { type QuantFlags, parseQuantFlags } from '../quantize/cli-options.js';
import { STRATEGIES, type StrategyChoice } from '../quantize/run.js';
import { bytes } from './inspect-render.js';

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
  seed: string;
  force?: boolean;
  verify: boolean;
  threads?: string;
}

function choice<T extends string>(value: string, allowed: readonly T[], flag: string): T {
  if (!(allowed as readonly string[]).includes(value)) throw new UsageError(`${flag} must be one of ${allowed.join(', ')}`);
  return value as T;
}

/** `sphana export MODEL`: the main job, export → quantize → verify → manifest. */
export async function run([model]: string[], o: ExportCliOptions, out: Output): Promise<number> {
  if (!/^\d+$/.test(o.seed)) throw new UsageError('--seed must be a non-negative integer');
  const open = new Map<string, Step>();
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
    seed: Number(o.seed),
    force: !!o.force,
    verify: o.verify,
    threads: o.threads ? Number(o.threads) : undefined,
    events: {
      start: (step, label) => open.set(step, out.step(label)),
      progress: (step, message) => open.get(step)?.update(message),
      done: (step, info) => { open.get(step)?.succeed(info.skipped ? 'skipped: up to date' : info.detail); open.delete(step); },
      failed: (step) => { open.get(step)?.fail(); open.delete(step); },
    },
  };
  const summary = await runExport(options);
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
