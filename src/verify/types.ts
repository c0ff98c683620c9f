import type { Precision } from '../manifest/schema.js';
import type { QualityGate, QualityReport, QuantizedPrecision } from '../quality/gates.js';

/** The checks `verifyArtifacts` runs, in order. */
export const CHECK_NAMES = ['files', 'structure', 'tokenizer', 'runtime', 'agreement', 'sample', 'speed'] as const;
export type CheckName = (typeof CHECK_NAMES)[number];

/** Informational checks report figures but never fail the verification (unless they could not run at all). */
export const INFORMATIONAL: ReadonlySet<CheckName> = new Set(['sample', 'speed']);

/**
 * `passed`: the check ran and its gate held. `failed`: it ran and found a problem.
 * `skipped`: a prerequisite was missing (a model that cannot be loaded, no quantized model,
 * a tokenizer that cannot encode); the check that found the missing prerequisite fails.
 */
export type CheckStatus = 'passed' | 'failed' | 'skipped';

export type Figures = Record<string, unknown>;

export interface CheckResult {
  name: CheckName;
  status: CheckStatus;
  /** status === 'passed'. */
  passed: boolean;
  seconds: number;
  /** The check's numbers: JSON-serialisable, stable keys. */
  figures: Figures;
  /** One line: the key figures when it passed, what is wrong when it failed, why when it was skipped. */
  message: string;
}

/**
 * Overrides of the agreement check's gates (`--top1`, `--cosine`, `--kl`), applied to every
 * quantized precision; the defaults are per precision family (src/quality/gates.ts).
 */
export interface AgreementThresholds {
  /** Minimum margin-aware top-1 agreement (near-ties count as agreement). */
  top1: number;
  /** Minimum mean cosine similarity of the logits. */
  cosine: number;
  /** Maximum mean KL(fp32 || quantized) of the next-token distributions, in nats. */
  kl: number;
}

/** The gates applied, per quantized precision of the artifact. */
export type AppliedGates = Partial<Record<QuantizedPrecision, QualityGate>>;

/**
 * How far the cached path (prefill + decode steps) may be from a full-sequence run without
 * cache: max |Δlogit| ≤ atol + rtol × (largest |logit|). fp32 differs only by rounding. Dynamic
 * INT8 quantizes activations with one scale per call, so a one-token step and a whole sequence
 * round differently: measured 1.1% of the logit scale on tiny_llm, while a cache whose key and
 * value are swapped in one layer is off by 24%.
 */
export const CACHE_TOLERANCE: Record<Precision, { atol: number; rtol: number }> = {
  fp32: { atol: 1e-3, rtol: 1e-4 },
  fp16: { atol: 1e-2, rtol: 1e-3 },
  int8: { atol: 1e-2, rtol: 0.05 },
  int4: { atol: 1e-2, rtol: 0.05 },
};

export function cacheTolerance(precision: Precision, logitScale: number): number {
  const t = CACHE_TOLERANCE[precision];
  return t.atol + t.rtol * logitScale;
}

export interface VerifyOptions {
  /** Text for the runtime check and the greedy sample; default: the first built-in prompt. */
  prompt?: string;
  /** Decode steps for the runtime check, the sample and the speed figures. */
  tokens?: number;
  /** Precisions to run (default: every model in the manifest). */
  precisions?: Precision[];
  /** onnxruntime intra-op threads. */
  threads?: number;
  thresholds?: Partial<AgreementThresholds>;
  /** Run only these checks (the others are left out of the report). */
  only?: CheckName[];
  /** Progress lines for people ("fp32: opening session"). */
  onProgress?: (message: string) => void;
}

export interface VerificationReport {
  ok: boolean;
  /** The artifact folder and manifest, as given (resolved). */
  dir: string;
  manifest: string;
  name: string;
  precisions: Precision[];
  /** The agreement check's gates, per quantized precision (defaults with any overrides). */
  thresholds: AppliedGates;
  prompt: string;
  /** Where the prompts' token ids came from: the artifact's tokenizer, or fixed synthetic ids when it cannot encode for this model. */
  promptIds: 'tokenizer' | 'synthetic' | null;
  /** What the agreement check fed: the corpus through the tokenizer, or synthetic ids (and why). */
  qualityText: { source: 'corpus' | 'synthetic'; corpusVersion: number; sequences: number; tokens: number; why?: string } | null;
  /** The quality section per quantized precision (figures, gate, verdict), as recorded in the manifest. */
  quality: Partial<Record<QuantizedPrecision, QualityReport>>;
  tokens: number;
  threads: number;
  /** Names of failed checks, in order. */
  failed: CheckName[];
  skipped: CheckName[];
  checks: CheckResult[];
  seconds: number;
  tools: Record<string, string>;
}
