import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { removeOnExit, runTag, sweepDeadStaging } from '../cleanup.js';
import { renameDurable } from '../artifacts/files.js';
import { acquireLock } from '../artifacts/lock.js';
import { InputError, JobFailedError, SphanaError, UsageError } from '../errors.js';
import { type ModelSummary, inspectFile } from '../onnx/summary.js';
import { type QuantizeRequest, type QuantizeResult, bridgeQuantize } from '../python/entry-points.js';
import { type Int8Engine, type Int8Scheme, type QuantizePrecision, type QuantizeStrategy, type StrategyChoice, QUANT_DEFAULTS, STRATEGIES } from '../vocabulary.js';
import type { BridgeProgress } from '../python/bridge.js';
import { type BridgeEnvironment, ensureBridgeEnvironment } from '../python/environment.js';
import type { Agreement } from '../runtime/metrics.js';
import { type TokenizerSource, textsFromDir } from '../quality/corpus-ids.js';
import { CALIBRATION } from '../quality/calibration.js';
import type { QualityReport } from '../quality/gates.js';
import { checkQuantizedOutput, referenceLogits } from './checks.js';

export { STRATEGIES, type StrategyChoice };

export const DEFAULT_PROTO_LIMIT = 2 ** 31;

export interface Attempt {
  strategy: QuantizeStrategy;
  /** The setting tried (see QuantSetting), e.g. 'weight-only level 4'. */
  setting?: string;
  ok: boolean;
  seconds: number;
  error?: { class: string; message: string };
  notes?: string[];
  /** The acceptance check's figures for this attempt. */
  agreement?: Agreement;
  /** The quality gate's figures and verdict, when the output got that far. */
  quality?: QualityReport;
  bytes?: number;
  /** Decode tokens/s of this candidate and of the fp32 model, each on the session its gate ran on (fp32 when its reference logits were computed); seconds: the timed steps of both. */
  speed?: { candidate: number; fp32: number; ratio: number; seconds: number };
}

/** One quantization setting the gate may try: the bridge request fields it sets. */
export interface QuantSetting {
  label: string;
  request: Partial<Pick<QuantizeRequest, 'int8Scheme' | 'accuracyLevel' | 'headAccuracyLevel' | 'gatedAccuracyLevel' | 'headBits' | 'embeddingBits' | 'symmetric' | 'algorithm' | 'blockSize' | 'equalize'>>;
}

/**
 * SmoothQuant's alpha for the equalized INT8 rung. Measured on the real SmolLM2-135M-Instruct
 * (shipped corpus, 710 positions, level 4; bench/results/int8.md): alpha 0.5 top-1 0.962 / KL
 * 0.0036, 0.75 and 0.3 worse (see there); unequalized 0.941 / 0.0067.
 */
export const EQUALIZE_ALPHA = 0.5;

/**
 * The settings the gate tries, fastest first. INT8 weight-only: accuracy_level 4 (int8
 * activations, the only level faster than fp32 on x86 CPUs), first with the activation outliers
 * equalized into the float weights (SmoothQuant-style, calibrated on CALIBRATION: same graph, same
 * size, same speed, fewer activation-quantization errors) when the model has a real tokenizer
 * (`calibrated`), else plain; then the MatMuls whose inputs carry the largest activation outliers
 * at level 0 (float activations): the LM head and the down projections of a gated MLP (found by
 * structure: fed by a product of two activations), then every MatMul at level 0 (the most
 * accurate, and slower than fp32: the report says so). An explicit --accuracy-level or the
 * dynamic scheme is one setting (level 4 equalized when calibrated). INT4: asymmetric blocks, LM
 * head and embedding at 8 bits; integer zero points first, then float zero points (rtn-float-zp)
 * for that and every later rung, unless --int4-algorithm or --symmetric fixed the quantizer.
 */
export function settingsLadder(precision: QuantizePrecision, o: Pick<QuantizeOptions, 'int8Scheme' | 'accuracyLevel' | 'int4'>, calibrated = false): QuantSetting[] {
  if (precision === 'int8' && o.int8Scheme === 'dynamic') return [{ label: 'dynamic', request: { int8Scheme: 'dynamic' } }];
  const base: QuantSetting['request'] = precision === 'int8' ? { int8Scheme: 'weight-only' } : { ...(o.int4 ?? {}) };
  const name = precision === 'int8' ? 'weight-only' : 'int4';
  const equalized: QuantSetting | null = precision === 'int8' && calibrated
    ? { label: `${name} level 4, equalized (alpha ${EQUALIZE_ALPHA})`, request: { ...base, accuracyLevel: 4, equalize: EQUALIZE_ALPHA } }
    : null;
  if (o.accuracyLevel !== undefined) {
    return [o.accuracyLevel === 4 && equalized ? equalized : { label: `${name} level ${o.accuracyLevel}`, request: { ...base, accuracyLevel: o.accuracyLevel } }];
  }
  const first: QuantSetting = equalized ?? { label: `${name} level 4`, request: { ...base, accuracyLevel: 4 } };
  // INT4 without an explicit algorithm or --symmetric: after onnxruntime's RTN (integer zero
  // points, the smallest artifact), the same blocks with float zero points (rtn-float-zp, +3.5
  // bytes per 32 weights), which the rest of the ladder keeps. On the real SmolLM2 (a Q4_1 GGUF
  // dequantized, 710 positions; bench/results/int8.md): RTN top-1 0.689 / KL 0.373, refused;
  // rtn-float-zp 0.980 / 0.0009, because float zero points reproduce the source's Q4_1 grid.
  const floatZp = precision === 'int4' && base.algorithm === undefined && !base.symmetric;
  const rest: QuantSetting['request'] = floatZp ? { ...base, algorithm: 'rtn-float-zp' } : base;
  const restName = floatZp ? `${name} rtn-float-zp` : name;
  return [
    first,
    ...(floatZp ? [{ label: `${restName} level 4`, request: { ...rest, accuracyLevel: 4 } }] : []),
    { label: `${restName} level 4, LM head and gated-MLP down projections level 0`, request: { ...rest, accuracyLevel: 4, headAccuracyLevel: 0, gatedAccuracyLevel: 0 } },
    { label: `${restName} level 0`, request: { ...rest, accuracyLevel: 0 } },
  ];
}

export interface QuantizeOptions {
  input: string;
  output?: string;
  strategy?: StrategyChoice;
  precision?: QuantizePrecision;
  perChannel?: boolean;
  /** Dynamic int8 scheme only. Default 'streaming': onnxruntime's dynamic INT8 format, quantized tensor by tensor (flat memory). */
  engine?: Int8Engine;
  /** int8: 'weight-only' (default: MatMulNBits 8-bit blocks) or 'dynamic' (DynamicQuantizeLinear + MatMulInteger). */
  int8Scheme?: Int8Scheme;
  /** A fixed MatMulNBits accuracy_level; without it the gate walks settingsLadder(). */
  accuracyLevel?: number;
  /** int4 settings (block size, symmetric, head/embedding bits, algorithm). */
  int4?: Partial<Pick<QuantizeRequest, 'blockSize' | 'symmetric' | 'headBits' | 'embeddingBits' | 'algorithm'>>;
  /** Measure decode tokens/s of the accepted candidate against fp32 (default true). */
  speedProbe?: boolean;
  force?: boolean;
  threads?: number;
  /** The model's tokenizer for the quality gate's corpus; default: tokenizer.json beside the input, if any. */
  tokenizer?: TokenizerSource | null;
  env?: BridgeEnvironment;
  signal?: AbortSignal;
  onAttempt?: (strategy: QuantizeStrategy, setting?: string) => void;
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
  /** The accepted output's quality section (corpus figures against fp32, the gate, the verdict). */
  quality: QualityReport | null;
  notes: string[];
  seconds: number;
  /** The accepted setting and what the bridge reports about it (scheme, bits, levels). */
  setting: string;
  settings: Record<string, string | number | boolean>;
  head: QuantizeResult['head'] | null;
  speed: Attempt['speed'] | null;
  /** True when the shipped candidate decoded slower than fp32 in the probe (said plainly, never hidden). */
  slowerThanFp32: boolean;
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
  const tokenizer = options.tokenizer === undefined ? { dir: dirname(resolve(input)), synthetic: false } : options.tokenizer;
  // The fp32 model is loaded once: its corpus logits and (with the probe) its decode speed; each
  // candidate once: its gate, then its decode speed when it passed.
  const probe = options.speedProbe !== false && !!inputSummary.kvCache;
  const vocabDim = inputSummary.outputs.find((o) => o.name === 'logits')?.shape?.at(-1);
  // the gate's corpus and the equalization's calibration text through the model's own tokenizer,
  // loaded once (no calibration for synthetic ones)
  const texts = textsFromDir(tokenizer, typeof vocabDim === 'number' ? vocabDim : 32, CALIBRATION);
  const calibrationIds = precision === 'int8' && typeof vocabDim === 'number' ? texts.segments : null;
  const reference = referenceLogits(inputSummary, { threads: options.threads, tokenizer, speedProbe: probe, text: texts.quality });
  const ladder = settingsLadder(precision, options, calibrationIds !== null);
  try {
    for (const setting of ladder) {
      for (const strategy of strategies) {
        options.onAttempt?.(strategy, setting.label);
        const t0 = performance.now();
        const target = join(staging, `${ladder.indexOf(setting)}-${strategy}`, basename(output));
        mkdirSync(dirname(target), { recursive: true });
        let result: QuantizeResult;
        try {
          result = await bridgeQuantize(env, {
            input: resolve(input), output: target, strategy, precision, perChannel: !!options.perChannel, protoLimitBytes: limit,
            ...(setting.request.int8Scheme === 'dynamic' ? { int8Engine: options.engine ?? QUANT_DEFAULTS.int8Engine } : {}),
            ...setting.request,
            ...(setting.request.equalize !== undefined && calibrationIds ? { calibrationIds } : {}),
          }, { onProgress: options.onProgress, signal: options.signal });
        } catch (error) {
          if (!(error instanceof SphanaError) || error.code === 'E_INTERRUPTED' || error.exitCode === 4) throw error;
          const cls = (error as SphanaError & { errorClass?: string }).errorClass ?? error.code;
          const attempt: Attempt = { strategy, setting: setting.label, ok: false, seconds: (performance.now() - t0) / 1000, error: { class: cls, message: error.message } };
          attempts.push(attempt);
          options.onAttemptDone?.(attempt);
          continue;
        }
        const check = await checkQuantizedOutput(inputSummary, target, { threads: options.threads, reference, precision, speedProbe: probe });
        const bytes = result.files.reduce((n, f) => n + f.bytes, 0);
        const attempt: Attempt = {
          strategy, setting: setting.label, ok: check.ok, seconds: (performance.now() - t0) / 1000, notes: result.notes, bytes,
          ...(check.agreement ? { agreement: check.agreement } : {}),
          ...(check.quality ? { quality: check.quality } : {}),
          ...(check.ok ? {} : { error: { class: 'Rejected', message: check.failures.join('; ') } }),
        };
        const ref = check.ok && probe ? (await reference())?.speed : null;
        if (ref && check.speed) {
          attempt.speed = { candidate: check.speed.tokensPerSecond, fp32: ref.tokensPerSecond, ratio: check.speed.tokensPerSecond / ref.tokensPerSecond, seconds: ref.seconds + check.speed.seconds };
        }
        attempts.push(attempt);
        options.onAttemptDone?.(attempt);
        if (!check.ok) rmSync(dirname(target), { recursive: true, force: true }); // one candidate on disk at a time
        // the numerics are the same for every strategy of one setting: a rejection by the
        // agreement check moves on to the next setting, any other failure to the next strategy
        if (!check.ok && check.agreement !== undefined) break;
        if (!check.ok) continue;
        for (const f of outputFiles(output)) if (options.force) rmSync(f, { force: true });
        const files: QuantizeReport['files'] = [];
        for (const f of result.files) {
          const finalPath = join(dirname(output), basename(f.path));
          if (dirname(resolve(f.path)) !== dirname(target)) throw new JobFailedError('E_BRIDGE_OUTPUT', `the bridge reported an output outside its staging folder: ${f.path}`);
          renameDurable(f.path, finalPath);
          files.push({ path: finalPath, bytes: f.bytes });
        }
        const slowerThanFp32 = !!attempt.speed && attempt.speed.ratio < 1;
        const notes = [...result.notes];
        if (slowerThanFp32) {
          notes.push(`this ${precision} artifact decoded SLOWER than fp32 on this CPU (${attempt.speed!.candidate.toFixed(1)} vs ${attempt.speed!.fp32.toFixed(1)} tok/s): ${ladder.indexOf(setting) > 0 ? 'the faster settings did not keep the answers' : 'no faster setting is known for it'}`);
        }
        return {
          input, output, precision, strategy, files, attempts, quantizedOps: check.summary?.quantization.quantizedOps ?? result.quantizedOps,
          agreement: check.agreement ?? null, quality: check.quality ?? null, notes, seconds: (performance.now() - started) / 1000,
          setting: setting.label, settings: result.settings ?? {}, head: result.head ?? null, speed: attempt.speed ?? null, slowerThanFp32,
        };
      }
    }
  } finally {
    rmSync(staging, { recursive: true, force: true });
    forget();
  }
  const list = attempts.map((a) => `${a.setting ? `${a.setting} / ` : ''}${a.strategy}: ${a.error?.class}: ${a.error?.message} (${a.seconds.toFixed(1)}s)`).join(' | ');
  throw new JobFailedError('E_QUANTIZE_FAILED', `every setting and strategy failed: ${list}`, {
    hint: 'see each attempt above; rerun with --verbose for the bridge log',
    details: { attempts },
  });
}
