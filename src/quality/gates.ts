import type { Precision } from '../manifest/schema.js';
import { type Agreement, NEAR_TIE_NATS } from '../runtime/metrics.js';

/**
 * Quality gates of a quantized model against fp32 on the shipped corpus, one per precision
 * family, calibrated on the real SmolLM2-135M-Instruct and on random-weight models (figures in
 * README `### Why these defaults`). Shared by the quantize acceptance check and `sphana verify`.
 */

export type QuantizedPrecision = Exclude<Precision, 'fp32'>;

export interface QualityGate {
  /** Minimum margin-aware top-1 agreement (near-ties within `nearTieNats` count as agreement). */
  top1: number;
  /** Minimum mean cosine of the logits. */
  cosine: number;
  /** Maximum mean KL(fp32 ‖ quantized) of the next-token distributions, in nats. */
  kl: number;
  /** ε of the margin-aware top-1, in nats. */
  nearTieNats: number;
}

export const QUALITY_GATES: Record<QuantizedPrecision, QualityGate> = {
  fp16: { top1: 0.99, cosine: 0.999, kl: 0.005, nearTieNats: NEAR_TIE_NATS },
  int8: { top1: 0.97, cosine: 0.98, kl: 0.05, nearTieNats: NEAR_TIE_NATS },
  int4: { top1: 0.85, cosine: 0.95, kl: 0.35, nearTieNats: NEAR_TIE_NATS },
};

/** The gate of a precision, with any of its fields overridden (CLI flags). */
export function gateFor(precision: QuantizedPrecision, overrides: Partial<QualityGate> = {}): QualityGate {
  const defined = Object.fromEntries(Object.entries(overrides).filter(([, v]) => v !== undefined));
  return { ...QUALITY_GATES[precision], ...defined };
}

export interface GateVerdict {
  passed: boolean;
  /** What failed ("near-tie top-1 0.912 < 0.98"), empty when passed. */
  failures: string[];
  /** One line: the figures and the gate. */
  reason: string;
}

export function judge(agreement: Agreement, gate: QualityGate): GateVerdict {
  const a = agreement;
  const failures: string[] = [];
  if (!(a.nearTieTop1 >= gate.top1)) failures.push(`top-1 ${a.nearTieTop1.toFixed(3)} < ${gate.top1} (near-ties ≤ ${gate.nearTieNats} nats count; plain ${a.top1Agreement.toFixed(3)})`);
  if (!(a.meanCosine >= gate.cosine)) failures.push(`cosine ${a.meanCosine.toFixed(4)} < ${gate.cosine}`);
  if (!(a.meanKl <= gate.kl)) failures.push(`KL ${a.meanKl.toFixed(4)} > ${gate.kl}`);
  const figures = `top-1 ${a.nearTieTop1.toFixed(3)} (plain ${a.top1Agreement.toFixed(3)}), cosine ${a.meanCosine.toFixed(4)}, KL ${a.meanKl.toFixed(4)}, ppl ${fmtPpl(a.referencePerplexity)} → ${fmtPpl(a.candidatePerplexity)}`;
  return { passed: failures.length === 0, failures, reason: failures.length ? failures.join(', ') : figures };
}

function fmtPpl(x: number): string {
  return Number.isFinite(x) ? x.toFixed(2) : String(x);
}

/**
 * The concise quality section of one precision, as llama.cpp's perplexity scoreboard reports a
 * quantization type: perplexity of fp32 and of the quantized model on the corpus and their
 * difference, mean and max KL, top-1 agreement plain and margin-aware.
 */
export interface QualityReport {
  precision: QuantizedPrecision;
  /** Where the token ids came from: the corpus through the artifact's tokenizer, or synthetic ids. */
  text: 'corpus' | 'synthetic';
  corpusVersion: number;
  sequences: number;
  positions: number;
  scoredTokens: number;
  top1: number;
  nearTieTop1: number;
  nearTieNats: number;
  disagreements: number;
  nearTieDisagreements: number;
  meanKl: number;
  maxKl: number;
  meanCosine: number;
  /** null when the text is synthetic ids (a perplexity on random ids means nothing). */
  ppl: { fp32: number; quantized: number; delta: number; deltaPercent: number } | null;
  gate: QualityGate;
  passed: boolean;
  reason: string;
}

export function qualityReport(precision: QuantizedPrecision, a: Agreement, gate: QualityGate, text: { source: 'corpus' | 'synthetic'; corpusVersion: number; sequences: number }): QualityReport {
  const v = judge(a, gate);
  const hasPpl = text.source === 'corpus' && Number.isFinite(a.referencePerplexity) && Number.isFinite(a.candidatePerplexity);
  return {
    precision, text: text.source, corpusVersion: text.corpusVersion, sequences: text.sequences,
    positions: a.positions, scoredTokens: a.scoredTokens,
    top1: sig(a.top1Agreement), nearTieTop1: sig(a.nearTieTop1), nearTieNats: a.nearTieNats,
    disagreements: a.disagreements, nearTieDisagreements: a.nearTieDisagreements,
    meanKl: sig(a.meanKl), maxKl: sig(a.maxKl), meanCosine: sig(a.meanCosine, 6),
    ppl: hasPpl ? {
      fp32: sig(a.referencePerplexity, 5), quantized: sig(a.candidatePerplexity, 5),
      delta: sig(a.candidatePerplexity - a.referencePerplexity),
      deltaPercent: sig(100 * (a.candidatePerplexity / a.referencePerplexity - 1), 3),
    } : null,
    gate, passed: v.passed, reason: v.reason,
  };
}

function sig(value: number, digits = 4): number {
  if (!Number.isFinite(value) || value === 0) return value;
  return Number(value.toPrecision(digits));
}
