import { argmax } from './decoder.js';

/**
 * The one place where a candidate model's next-token logits are compared with a reference's
 * (fp32): the quantize acceptance check and `sphana verify` both use it.
 *
 * - top-1: the share of positions where both pick the same token.
 * - near-tie top-1 (margin-aware): a position also agrees when the candidate's pick is one the
 *   reference itself nearly tied with its own: log p_ref(candidate's pick) ≥ log p_ref(ref's
 *   pick) − ε (ε in nats; logit differences are log-probability differences). A quantized model
 *   that swaps two tokens fp32 could not tell apart is not wrong.
 * - mean KL(ref ‖ candidate) of the next-token distributions, in nats.
 * - mean cosine of the raw logits, max |Δlogit|.
 * - perplexity of both models on the text itself (teacher-forced: position p predicts token
 *   p + 1), the way llama.cpp's perplexity tool scores a quantization type.
 */

/** Default ε of the near-tie top-1, in nats (see README `Why these defaults`). */
export const NEAR_TIE_NATS = 0.5;

export interface Agreement {
  positions: number;
  top1Agreement: number;
  /** Margin-aware top-1: disagreements where fp32 rated the candidate's pick within `nearTieNats` of its own count as agreement. */
  nearTieTop1: number;
  nearTieNats: number;
  /** Positions where the top-1 differs, and how many of those were near-ties. */
  disagreements: number;
  nearTieDisagreements: number;
  meanCosine: number;
  meanKl: number;
  maxKl: number;
  maxAbsDiff: number;
  /** Positions with a next token (teacher-forced), over which the perplexities are taken. */
  scoredTokens: number;
  /** exp(mean −log p(next token)), NaN when no position has a next token. */
  referencePerplexity: number;
  candidatePerplexity: number;
}

/**
 * Accumulates agreement over several sequences (rows of `vocab` logits per position); the
 * result pools every position and every scored token, so sequences weigh by their length.
 */
export class AgreementAccumulator {
  private positions = 0;
  private top1 = 0;
  private nearTie = 0;
  private cosine = 0;
  private kl = 0;
  private maxKl = 0;
  private maxAbsDiff = 0;
  private scored = 0;
  private refNll = 0;
  private candNll = 0;

  constructor(readonly nearTieNats = NEAR_TIE_NATS) {
    if (!(nearTieNats >= 0)) throw new RangeError(`near-tie ε must be ≥ 0 (got ${nearTieNats})`);
  }

  /**
   * Adds one sequence. `tokens`, when given, are the ids that were fed (one per position):
   * position p is scored on tokens[p + 1].
   */
  add(reference: Float32Array, candidate: Float32Array, vocab: number, tokens?: readonly number[]): this {
    if (reference.length !== candidate.length || reference.length % vocab !== 0 || vocab <= 0) {
      throw new RangeError(`logits of different sizes (${reference.length} vs ${candidate.length}, vocab ${vocab})`);
    }
    const positions = reference.length / vocab;
    if (tokens && tokens.length !== positions) throw new RangeError(`${tokens.length} tokens for ${positions} positions of logits`);
    for (let p = 0; p < positions; p++) {
      const a = reference.subarray(p * vocab, (p + 1) * vocab);
      const b = candidate.subarray(p * vocab, (p + 1) * vocab);
      // Pass 1: both argmaxes (the first maximum, as argmax()), cosine terms and max |Δ|.
      let ta = 0, tb = 0, ma = a[0], mb = b[0];
      let dot = 0, na = 0, nb = 0, maxAbs = this.maxAbsDiff;
      for (let i = 0; i < vocab; i++) {
        const ai = a[i], bi = b[i];
        if (ai > ma) { ma = ai; ta = i; }
        if (bi > mb) { mb = bi; tb = i; }
        dot += ai * bi; na += ai * ai; nb += bi * bi;
        const d = Math.abs(ai - bi);
        if (d > maxAbs) maxAbs = d;
        else if (d !== d) maxAbs = Infinity; // NaN
      }
      this.maxAbsDiff = maxAbs;
      if (ta === tb) {
        this.top1 += 1;
        this.nearTie += 1;
      } else if (a[ta] - a[tb] <= this.nearTieNats) this.nearTie += 1;
      this.cosine += na === 0 || nb === 0 ? (na === nb ? 1 : 0) : dot / Math.sqrt(na * nb);
      // Pass 2, without allocating: log Z of both, and KL(ref ‖ cand) = Σ p·(a − b) − log Za + log Zb
      // with p = exp(a − log Za) (the same sums as logSoftmax() + klOfLogProbs(), 2 exp per entry).
      let sa = 0, sb = 0, w = 0;
      for (let i = 0; i < vocab; i++) {
        const ea = Math.exp(a[i] - ma);
        sa += ea;
        sb += Math.exp(b[i] - mb);
        if (ea > 0) w += ea * (a[i] - b[i]);
      }
      const logZa = Math.log(sa) + ma;
      const logZb = Math.log(sb) + mb;
      const raw = w / sa - logZa + logZb;
      const kl = Number.isNaN(raw) ? Infinity : Math.max(0, raw);
      this.kl += kl;
      this.maxKl = Math.max(this.maxKl, kl);
      if (tokens && p + 1 < positions) {
        const next = tokens[p + 1];
        if (!(next >= 0 && next < vocab)) throw new RangeError(`token ${next} is outside the ${vocab} logits`);
        this.scored += 1;
        this.refNll += logZa - a[next];
        this.candNll += logZb - b[next];
      }
      this.positions += 1;
    }
    return this;
  }

  result(): Agreement {
    const n = this.positions;
    if (n === 0) throw new RangeError('no positions compared');
    const disagreements = n - this.top1;
    return {
      positions: n,
      top1Agreement: this.top1 / n,
      nearTieTop1: this.nearTie / n,
      nearTieNats: this.nearTieNats,
      disagreements,
      nearTieDisagreements: this.nearTie - this.top1,
      meanCosine: this.cosine / n,
      meanKl: this.kl / n,
      maxKl: this.maxKl,
      maxAbsDiff: this.maxAbsDiff,
      scoredTokens: this.scored,
      referencePerplexity: this.scored ? Math.exp(this.refNll / this.scored) : NaN,
      candidatePerplexity: this.scored ? Math.exp(this.candNll / this.scored) : NaN,
    };
  }
}

/** Pools agreements of several sequences as if they had been accumulated together. */
export function poolAgreements(parts: readonly Agreement[]): Agreement {
  if (!parts.length) throw new RangeError('no positions compared');
  const positions = parts.reduce((n, a) => n + a.positions, 0);
  const scored = parts.reduce((n, a) => n + a.scoredTokens, 0);
  const mean = (key: 'top1Agreement' | 'nearTieTop1' | 'meanCosine' | 'meanKl') => parts.reduce((n, a) => n + a[key] * a.positions, 0) / positions;
  const ppl = (key: 'referencePerplexity' | 'candidatePerplexity') => scored ? Math.exp(parts.reduce((n, a) => n + (a.scoredTokens ? Math.log(a[key]) * a.scoredTokens : 0), 0) / scored) : NaN;
  return {
    positions,
    top1Agreement: mean('top1Agreement'),
    nearTieTop1: mean('nearTieTop1'),
    nearTieNats: parts[0].nearTieNats,
    disagreements: parts.reduce((n, a) => n + a.disagreements, 0),
    nearTieDisagreements: parts.reduce((n, a) => n + a.nearTieDisagreements, 0),
    meanCosine: mean('meanCosine'),
    meanKl: mean('meanKl'),
    maxKl: Math.max(...parts.map((a) => a.maxKl)),
    maxAbsDiff: Math.max(...parts.map((a) => a.maxAbsDiff)),
    scoredTokens: scored,
    referencePerplexity: ppl('referencePerplexity'),
    candidatePerplexity: ppl('candidatePerplexity'),
  };
}

/** Agreement of one set of logits (rows of `vocab`), optionally scored on the fed tokens. */
export function compareLogits(reference: Float32Array, candidate: Float32Array, vocab: number, tokens?: readonly number[], nearTieNats = NEAR_TIE_NATS): Agreement {
  return new AgreementAccumulator(nearTieNats).add(reference, candidate, vocab, tokens).result();
}

/** KL(softmax(p) || softmax(q)), computed stably. */
export function klDivergence(p: ArrayLike<number>, q: ArrayLike<number>): number {
  return klOfLogProbs(logSoftmax(p), logSoftmax(q));
}

/** Perplexity of logits rows on the fed tokens: exp(mean over p of −log softmax(row p)[tokens[p + 1]]). */
export function perplexity(logits: Float32Array, vocab: number, tokens: readonly number[]): number {
  const positions = logits.length / vocab;
  if (!Number.isInteger(positions) || tokens.length !== positions) throw new RangeError(`${tokens.length} tokens for ${positions} positions of logits`);
  let nll = 0;
  for (let p = 0; p + 1 < positions; p++) nll -= logSoftmax(logits.subarray(p * vocab, (p + 1) * vocab))[tokens[p + 1]];
  return positions > 1 ? Math.exp(nll / (positions - 1)) : NaN;
}

function klOfLogProbs(lp: Float64Array, lq: Float64Array): number {
  let kl = 0;
  for (let i = 0; i < lp.length; i++) {
    const p = Math.exp(lp[i]);
    if (p > 0) kl += p * (lp[i] - lq[i]);
  }
  return Number.isNaN(kl) ? Infinity : Math.max(0, kl);
}

export function logSoftmax(x: ArrayLike<number>): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < x.length; i++) max = Math.max(max, x[i]);
  let sum = 0;
  for (let i = 0; i < x.length; i++) sum += Math.exp(x[i] - max);
  const log = Math.log(sum) + max;
  return Float64Array.from({ length: x.length }, (_, i) => x[i] - log);
}
