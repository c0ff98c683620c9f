import { statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { InputError, UsageError } from '../errors.js';
import { PRECISIONS, type Precision } from '../manifest/schema.js';
import { onnxruntimeVersion } from '../runtime/onnxruntime.js';
import { checkAgreement } from './agreement-check.js';
import { type Artifact, isSummary, openArtifact } from './artifact.js';
import { checkResult } from './check.js';
import { checkFiles } from './files-check.js';
import { qualityText } from '../quality/corpus-ids.js';
import { type QualityReport, type QuantizedPrecision, gateFor } from '../quality/gates.js';
import { DEFAULT_PROMPT, syntheticIds } from './prompts.js';
import { type PrecisionRun, runPrecision } from './run-precision.js';
import { type Unavailable, checkRuntime } from './runtime-check.js';
import { checkSample } from './sample-check.js';
import { checkSpeed } from './speed-check.js';
import { checkStructure } from './structure-check.js';
import { checkTokenizer, modelVocab } from './tokenizer-check.js';
import type { LoadedTokenizer } from './tokenizer-load.js';
import {
  type AgreementThresholds, type AppliedGates, CHECK_NAMES, type CheckName, type CheckResult, type VerificationReport, type VerifyOptions,
} from './types.js';

export * from './types.js';
export { openArtifact } from './artifact.js';
export { ROUND_TRIP_TEXTS } from './prompts.js';

export const DEFAULT_TOKENS = 16;
/** Tokens of the prefill whose speed is measured. */
export const SPEED_PROMPT_TOKENS = 64;

/**
 * Verifies an artifact folder (or its manifest.json): files, structure, tokenizer, runtime,
 * agreement, sample, speed. Every check runs even when an earlier one failed, unless what it
 * needs is missing (then it is `skipped`). Bad input (no folder, no or unreadable manifest,
 * a precision the artifact lacks) throws an InputError; failed checks do not throw.
 */
export async function verifyArtifacts(dirOrManifest: string, options: VerifyOptions = {}, onCheck?: (check: CheckResult) => void): Promise<VerificationReport> {
  const started = performance.now();
  const artifact = openArtifact(dirOrManifest);
  const precisions = selectPrecisions(artifact, options.precisions);
  const overrides = resolveThresholds(options.thresholds);
  const thresholds: AppliedGates = Object.fromEntries(precisions.filter((p) => p !== 'fp32').map((p) => [p, gateFor(p as QuantizedPrecision, overrides)]));
  const tokens = options.tokens ?? DEFAULT_TOKENS;
  if (!Number.isInteger(tokens) || tokens < 1 || tokens > 4096) throw new UsageError(`--tokens must be an integer from 1 to 4096 (got ${tokens})`);
  const threads = options.threads ?? availableParallelism();
  if (!Number.isInteger(threads) || threads < 1) throw new UsageError(`--threads must be a positive integer (got ${threads})`);
  const prompt = options.prompt ?? DEFAULT_PROMPT;
  const wanted = new Set<CheckName>(options.only?.length ? options.only : CHECK_NAMES);
  const checks: CheckResult[] = [];
  const emit = (check: CheckResult) => {
    if (!wanted.has(check.name)) return;
    checks.push(check);
    onCheck?.(check);
  };
  const progress = options.onProgress ?? (() => {});
  let promptSource: VerificationReport['promptIds'] = null;
  let textInfo: VerificationReport['qualityText'] = null;
  let quality: Partial<Record<QuantizedPrecision, QualityReport>> = {};

  if (wanted.has('files')) {
    progress('files: sizes and sha256');
    emit(await checkFiles(artifact));
  }
  const needsRuntime = ['runtime', 'agreement', 'sample', 'speed'].some((n) => wanted.has(n as CheckName));
  // The runtime checks size their buffers from the manifest (layers, heads, head dim): they run
  // only on a manifest whose sizes the structure check confirmed against the model files.
  const structure = wanted.has('structure') || needsRuntime ? checkStructure(artifact) : null;
  if (structure) emit(structure);
  let tokenizer: LoadedTokenizer | null = null;
  if (wanted.has('tokenizer') || needsRuntime) {
    progress('tokenizer: loading');
    const t = checkTokenizer(artifact);
    tokenizer = t.tokenizer;
    emit(t.result);
  }

  if (needsRuntime && structure?.status === 'failed') {
    const why = `skipped: the structure check failed, so the manifest's sizes are not trusted (${structure.message})`;
    for (const name of ['runtime', 'agreement', 'sample', 'speed'] as const) emit(checkResult(name, 'skipped', performance.now(), { reason: 'structure check failed' }, why));
  } else if (needsRuntime) {
    ({ promptSource, textInfo, quality } = await runtimeChecks({ artifact, precisions, tokenizer, prompt, wanted, tokens, threads, thresholds, progress, emit }));
  }

  const failed = checks.filter((c) => c.status === 'failed').map((c) => c.name);
  const skipped = checks.filter((c) => c.status === 'skipped').map((c) => c.name);
  return {
    ok: failed.length === 0,
    dir: artifact.dir,
    manifest: artifact.manifestPath,
    name: artifact.manifest.name,
    precisions,
    thresholds,
    prompt,
    promptIds: promptSource,
    qualityText: textInfo,
    quality,
    tokens,
    threads,
    failed,
    skipped,
    checks,
    seconds: Math.round((performance.now() - started)) / 1000,
    tools: { node: process.version, onnxruntimeNode: safeVersion() },
  };
}

interface RuntimeInputs {
  artifact: Artifact;
  precisions: Precision[];
  tokenizer: LoadedTokenizer | null;
  prompt: string;
  wanted: Set<CheckName>;
  tokens: number;
  threads: number;
  thresholds: AppliedGates;
  progress: (message: string) => void;
  emit: (check: CheckResult) => void;
}

interface RuntimeOutcome {
  promptSource: VerificationReport['promptIds'];
  textInfo: VerificationReport['qualityText'];
  quality: Partial<Record<QuantizedPrecision, QualityReport>>;
}

/** The checks that run the models (runtime, agreement, sample, speed): each precision's sessions once, fp32 first as the reference. */
async function runtimeChecks({ artifact, precisions, tokenizer, prompt, wanted, tokens, threads, thresholds, progress, emit }: RuntimeInputs): Promise<RuntimeOutcome> {
  let promptSource: VerificationReport['promptIds'] = null;
  const unavailable: Unavailable[] = [];
  const runnable: Array<{ precision: Precision; path: string }> = [];
  for (const precision of precisions) {
    const reason = unavailableReason(artifact, precision);
    if (reason) unavailable.push({ precision, reason });
    else runnable.push({ precision, path: artifact.abs(artifact.modelPath(precision)!) });
  }
  const vocab = modelVocab(artifact).vocab;
  const encode = (text: string, seed: number) => {
    const ids = promptIds(text, tokenizer, artifact, vocab, seed);
    promptSource = ids.synthetic || promptSource === 'synthetic' ? 'synthetic' : 'tokenizer';
    return ids.ids;
  };
  const promptTokens = encode(prompt, 0);
  const text = qualityText(tokenizer, { vocab, bos: artifact.manifest.tokenizer.bosTokenId, synthetic: artifact.manifest.tokenizer.synthetic });
  const textInfo: VerificationReport['qualityText'] = { source: text.source, corpusVersion: text.corpusVersion, sequences: text.sequences.length, tokens: text.sequences.reduce((n, s) => n + s.length, 0), ...(text.why ? { why: text.why } : {}) };
  const agreementPrompts = text.sequences;
  const speedPrompt = fill(agreementPrompts, SPEED_PROMPT_TOKENS);
  const runs: PrecisionRun[] = [];
  let reference: Float32Array[] | undefined;
  let agreementWhy: string | null = null;
  const quantized = precisions.filter((p) => p !== 'fp32');
  if (!quantized.length) agreementWhy = 'no quantized model to compare with fp32';
  else if (!precisions.includes('fp32')) agreementWhy = 'fp32 is the reference: include fp32 in --precision';
  else if (unavailable.some((u) => u.precision === 'fp32')) agreementWhy = `fp32 (the reference) cannot be run: ${unavailable.find((u) => u.precision === 'fp32')!.reason}`;
  for (const { precision, path } of runnable) {
    const run = await runPrecision(artifact.manifest, precision, path, {
      prompt: promptTokens, agreementPrompts, reference: precision === 'fp32' ? undefined : reference,
      keepLogits: precision === 'fp32' && quantized.length > 0 && wanted.has('agreement'),
      speedPrompt, tokens, threads, onProgress: progress,
      phases: { runtime: wanted.has('runtime'), agreement: wanted.has('agreement'), sample: wanted.has('sample'), speed: wanted.has('speed') },
    });
    if (precision === 'fp32') {
      reference = (run as { logits?: Float32Array[] }).logits;
      delete (run as { logits?: Float32Array[] }).logits;
      if (!reference && !agreementWhy) agreementWhy = `fp32 (the reference) did not run: ${run.error ?? 'no logits'}`;
    }
    runs.push(run);
  }
  reference = undefined;
  emit(checkRuntime(runs, unavailable));
  const unavailableQuantized = unavailable.filter((u) => u.precision !== 'fp32');
  const agreement = checkAgreement(runs, thresholds, agreementWhy, text);
  const quality = (agreement.figures.quality ?? {}) as RuntimeOutcome['quality'];
  if (agreement.status !== 'failed' && unavailableQuantized.length && !agreementWhy) {
    emit({ ...agreement, status: 'skipped', passed: false, message: `${agreement.message}; ${unavailableQuantized.map((u) => `${u.precision} not run (${u.reason})`).join('; ')}` });
  } else emit(agreement);
  emit(checkSample(runs, tokenizer, prompt, artifact.manifest.tokenizer.eosTokenIds));
  emit(checkSpeed(runs, threads));
  return { promptSource, textInfo, quality };
}

function selectPrecisions(artifact: Artifact, requested: Precision[] | undefined): Precision[] {
  const available = PRECISIONS.filter((p) => artifact.manifest.models.some((m) => m.precision === p));
  if (!requested?.length) return available;
  for (const p of requested) {
    if (!PRECISIONS.includes(p)) throw new UsageError(`unknown precision '${p}'; known: ${PRECISIONS.join(', ')}`);
    if (!available.includes(p)) {
      throw new InputError('E_PRECISION_NOT_IN_ARTIFACT', `the artifact has no ${p} model; it has ${available.join(', ')}`, { hint: 'pick from the precisions the manifest lists' });
    }
  }
  return PRECISIONS.filter((p) => requested.includes(p));
}

/** The overrides given (undefined ones dropped), validated. */
function resolveThresholds(given: Partial<AgreementThresholds> | undefined): Partial<AgreementThresholds> {
  const t: Partial<AgreementThresholds> = Object.fromEntries(Object.entries(given ?? {}).filter(([, v]) => v !== undefined));
  for (const key of ['top1', 'cosine'] as const) {
    if (t[key] !== undefined && !(t[key] >= 0 && t[key] <= 1)) throw new UsageError(`--${key} must be a number from 0 to 1 (got ${t[key]})`);
  }
  if (t.kl !== undefined && !(t.kl >= 0)) throw new UsageError(`--kl must be a number ≥ 0 (got ${t.kl})`);
  return t;
}

/** Why a precision's model cannot be run (missing file, unreadable, external data missing or short), or null. */
function unavailableReason(artifact: Artifact, precision: Precision): string | null {
  const path = artifact.modelPath(precision)!;
  if (!statSync(artifact.abs(path), { throwIfNoEntry: false })?.isFile()) return `${path} is missing`;
  const s = artifact.summary(path);
  if (!isSummary(s)) return s.error;
  if (s.problems.length) return `${path}: ${s.problems[0].message}`;
  return null;
}

/** Token ids of a prompt: the artifact's tokenizer (BOS first) when it fits the model, else fixed synthetic ids. */
function promptIds(text: string, tokenizer: LoadedTokenizer | null, artifact: Artifact, vocab: number, seed: number): { ids: number[]; synthetic: boolean } {
  if (tokenizer) {
    let ids = tokenizer.encode(text);
    const bos = artifact.manifest.tokenizer.bosTokenId;
    if (bos !== null && ids[0] !== bos && bos < vocab) ids = [bos, ...ids];
    if (ids.length > 0 && ids.every((id) => id >= 0 && id < vocab)) return { ids, synthetic: false };
  }
  return { ids: syntheticIds(12 + seed, vocab, seed), synthetic: true };
}

/** A prompt of `length` ids: the first prompt's first id (BOS), then the prompts' other ids, repeated. */
function fill(prompts: number[][], length: number): number[] {
  const first = prompts[0][0];
  const body = prompts.flatMap((p) => p.slice(1));
  if (!body.length) body.push(first);
  return [first, ...Array.from({ length: length - 1 }, (_, i) => body[i % body.length])];
}

function safeVersion(): string {
  try {
    return onnxruntimeVersion();
  } catch {
    return 'unknown';
  }
}
