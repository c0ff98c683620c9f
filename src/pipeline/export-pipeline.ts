import { join, resolve } from 'node:path';
import { acquireLock } from '../artifacts/lock.js';
import { buildManifest, writeManifest } from '../manifest/build.js';
import type { Manifest } from '../manifest/schema.js';
import type { QuantizeOptions, StrategyChoice } from '../quantize/run.js';
import type { Exporter, OptimizeMode, QuantizePrecision, SyntheticSize } from '../vocabulary.js';
import { assembleStep, exportStep, manifestInput, prepareWeights, quantizeStep, startRun, verifyStep } from './export-steps.js';
import type { PipelineEvents, StepTiming } from './step-runner.js';

export { MODEL_FILE } from './export-steps.js';

export interface ExportOptions {
  model: string;
  synthetic?: SyntheticSize;
  weights?: string;
  revision?: string;
  offline?: boolean;
  out: string;
  artifactVersion: string;
  precision: QuantizePrecision;
  strategy: StrategyChoice;
  /** Scheme, accuracy level and int4 settings (default: the gate's ladder, see settingsLadder). */
  quant?: Pick<QuantizeOptions, 'int8Scheme' | 'accuracyLevel' | 'int4'>;
  exporter: Exporter;
  /** onnxruntime fusions between export and quantize (default none). */
  optimize?: OptimizeMode;
  seed: number;
  force: boolean;
  verify: boolean;
  threads?: number;
  signal?: AbortSignal;
  events: PipelineEvents;
}

export type { PipelineEvents, StepTiming } from './step-runner.js';

export interface ExportSummary {
  dir: string;
  manifest: string;
  steps: StepTiming[];
  files: Manifest['files'];
  kvCache: Manifest['kvCache'];
  parity: unknown;
  quantization: Manifest['quantization'];
  verification: { ok: boolean; failed: string[] } | null;
}

/** export → quantize → verify → manifest, skipping steps whose recorded inputs still match; one run per folder (a lock). */
export async function runExport(options: ExportOptions): Promise<ExportSummary> {
  const dir = resolve(options.out, options.artifactVersion);
  const release = acquireLock(dir, `sphana export ${options.model}`);
  try {
    return await runLockedExport(options, dir);
  } finally {
    release();
  }
}

async function runLockedExport(options: ExportOptions, dir: string): Promise<ExportSummary> {
  const run = await startRun(options, dir);
  await prepareWeights(run);
  const exported = await exportStep(run);
  const quantized = await quantizeStep(run);
  await assembleStep(run);
  const input = await manifestInput(run, exported, quantized);
  let manifest = await run.steps.always('manifest', 'manifest (read back from the written files)', async () => {
    const built = await buildManifest(input);
    writeManifest(dir, built);
    return built;
  });
  let verification: ExportSummary['verification'] = null;
  if (options.verify) ({ manifest, verification } = await verifyStep(run, manifest));
  return { dir, manifest: join(dir, 'manifest.json'), steps: run.steps.timings, files: manifest.files, kvCache: manifest.kvCache, parity: manifest.parity, quantization: manifest.quantization, verification };
}

