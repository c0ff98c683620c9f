import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { removeOnExit, runTag, sweepDeadStaging } from '../cleanup.js';
import { renameDurable } from '../artifacts/files.js';
import { acquireLock } from '../artifacts/lock.js';
import { InputError, JobFailedError, SphanaError, UsageError } from '../errors.js';
import { type ModelSummary, inspectFile } from '../onnx/summary.js';
import { type QuantizePrecision, type QuantizeResult, type QuantizeStrategy, bridgeQuantize } from '../python/bridge-commands.js';
import type { BridgeProgress } from '../python/bridge.js';
import { type BridgeEnvironment, ensureBridgeEnvironment } from '../python/environment.js';
import type { Agreement } from '../runtime/metrics.js';
import { checkQuantizedOutput, referenceLogits } from './checks.js';

/** The fallback order of `auto`. */
export const STRATEGIES = ['direct', 'external-data', 'embedding-split'] as const satisfies readonly QuantizeStrategy[];
export type StrategyChoice = QuantizeStrategy | 'auto';

export const DEFAULT_PROTO_LIMIT = 2 ** 31;

export interface Attempt {
  strategy: QuantizeStrategy;
  ok: boolean;
  seconds: number;
  error?: { class: string; message: string };
  notes?: string[];
}

export interface QuantizeOptions {
  input: string;
  output?: string;
  strategy?: StrategyChoice;
  precision?: QuantizePrecision;
  perChannel?: boolean;
  /** Default 'streaming': onnxruntime's dynamic INT8 format, quantized tensor by tensor (flat memory). */
  engine?: 'ort' | 'streaming';
  force?: boolean;
  threads?: number;
  env?: BridgeEnvironment;
  signal?: AbortSignal;
  onAttempt?: (strategy: QuantizeStrategy) => void;
  onAttemptDone?: (attempt: Attempt) => void;
  onProgress?: (progress: BridgeProgress) => void;
}

export interface QuantizeReport {
  input: string;
  output: string;
  precision: QuantizePrecision;
  strategy: QuantizeStrategy;
  files: Array<{ path: string; bytes: number }>;
  attempts: Attempt[];
  quantizedOps: Record<string, number>;
  agreement: Agreement | null;
  notes: string[];
  seconds: number;
}

export function protoLimitBytes(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.SPHANA_PROTO_LIMIT_BYTES;
  if (raw === undefined || raw === '') return DEFAULT_PROTO_LIMIT;
  if (!/^\d+$/.test(raw)) throw new UsageError(`SPHANA_PROTO_LIMIT_BYTES must be a number of bytes, not '${raw}'`);
  return Number(raw);
}

export function defaultOutput(input: string, precision: QuantizePrecision): string {
  return input.replace(/(\.onnx)?$/i, `.${precision}.onnx`);
}

/** Files an output occupies: the .onnx and, if any, its `<name>.data`. */
function outputFiles(path: string): string[] {
  return [path, `${path}.data`];
}

/** Quantizes with one strategy or the `auto` fallback; every attempt is recorded and checked. */
export async function quantizeModel(options: QuantizeOptions): Promise<QuantizeReport> {
  const started = performance.now();
  const precision = options.precision ?? 'int8';
  const input = options.input;
  const output = resolve(options.output ?? defaultOutput(input, precision));
  const inputSummary: ModelSummary = inspectFile(input);
  if (inputSummary.problems.length) throw new InputError(inputSummary.problems[0].code, `${input}: ${inputSummary.problems[0].message}`);
  if (inputSummary.quantization.quantized) throw new InputError('E_ALREADY_QUANTIZED', `${input} is already quantized (${inputSummary.quantization.methods.join(', ')})`, { hint: 'quantize the fp32 model' });
  if (resolve(input) === output) throw new UsageError('the output would overwrite the input', { hint: 'pass -o with another name' });
  if (existsSync(output) && !options.force) {
    throw new InputError('E_OUTPUT_EXISTS', `${output} already exists`, { hint: 'pass --force to overwrite it' });
  }
  const strategies: QuantizeStrategy[] = !options.strategy || options.strategy === 'auto' ? [...STRATEGIES] : [options.strategy];
  const env = options.env ?? await ensureBridgeEnvironment({ signal: options.signal });
  const limit = protoLimitBytes();
  const release = acquireLock(output, `sphana quantize ${precision}`);
  try {
    return await quantizeLocked(options, { started, precision, input, output, inputSummary, strategies, env, limit });
  } finally {
    release();
  }
}

async function quantizeLocked(options: QuantizeOptions, ctx: {
  started: number; precision: QuantizePrecision; input: string; output: string; inputSummary: ModelSummary; strategies: QuantizeStrategy[]; env: BridgeEnvironment; limit: number;
}): Promise<QuantizeReport> {
  const { started, precision, input, output, inputSummary, strategies, env, limit } = ctx;
  // Staging a killed run left beside this output goes first; ours is unique to this run.
  const prefix = `.${basename(output)}.sphana-quantize-`;
  sweepDeadStaging(dirname(output), prefix);
  const staging = join(dirname(output), `${prefix}${runTag()}`);
  mkdirSync(staging, { recursive: true });
  const forget = removeOnExit(staging);
  const attempts: Attempt[] = [];
  const reference = referenceLogits(inputSummary, { threads: options.threads });
  try {
    for (const strategy of strategies) {
      options.onAttempt?.(strategy);
      const t0 = performance.now();
      const target = join(staging, strategy, basename(output));
      mkdirSync(dirname(target), { recursive: true });
      let result: QuantizeResult;
      try {
        result = await bridgeQuantize(env, {
          input: resolve(input), output: target, strategy, precision, perChannel: !!options.perChannel, protoLimitBytes: limit,
          int8Engine: options.engine ?? 'streaming',
        }, { onProgress: options.onProgress, signal: options.signal });
      } catch (error) {
        if (!(error instanceof SphanaError) || error.code === 'E_INTERRUPTED' || error.exitCode === 4) throw error;
        const cls = (error as SphanaError & { errorClass?: string }).errorClass ?? error.code;
        const attempt: Attempt = { strategy, ok: false, seconds: (performance.now() - t0) / 1000, error: { class: cls, message: error.message } };
        attempts.push(attempt);
        options.onAttemptDone?.(attempt);
        continue;
      }
      const check = await checkQuantizedOutput(inputSummary, target, { threads: options.threads, reference });
      const attempt: Attempt = {
        strategy, ok: check.ok, seconds: (performance.now() - t0) / 1000, notes: result.notes,
        ...(check.ok ? {} : { error: { class: 'Rejected', message: check.failures.join('; ') } }),
      };
      attempts.push(attempt);
      options.onAttemptDone?.(attempt);
      if (!check.ok) continue;
      for (const f of outputFiles(output)) if (options.force) rmSync(f, { force: true });
      const files: QuantizeReport['files'] = [];
      for (const f of result.files) {
        const finalPath = join(dirname(output), basename(f.path));
        if (dirname(resolve(f.path)) !== dirname(target)) throw new JobFailedError('E_BRIDGE_OUTPUT', `the bridge reported an output outside its staging folder: ${f.path}`);
        renameDurable(f.path, finalPath);
        files.push({ path: finalPath, bytes: f.bytes });
      }
      return {
        input, output, precision, strategy, files, attempts, quantizedOps: check.summary?.quantization.quantizedOps ?? result.quantizedOps,
        agreement: check.agreement ?? null, notes: result.notes, seconds: (performance.now() - started) / 1000,
      };
    }
  } finally {
    rmSync(staging, { recursive: true, force: true });
    forget();
  }
  const list = attempts.map((a) => `${a.strategy}: ${a.error?.class}: ${a.error?.message} (${a.seconds.toFixed(1)}s)`).join(' | ');
  throw new JobFailedError('E_QUANTIZE_FAILED', `every strategy failed: ${list}`, {
    hint: 'see each attempt above; rerun with --verbose for the bridge log',
    details: { attempts },
  });
}
