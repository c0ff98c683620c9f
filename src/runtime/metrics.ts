import { argmax } from './decoder.js';

/** Agreement between two sets of next-token logits (rows of `vocab`). */
export interface Agreement {
  positions: number;
  top1Agreement: number;
  meanCosine: number;
  meanKl: number;
  maxAbsDiff: number;
}

export function compareLogits(reference: Float32Array, candidate: Float32Array, vocab: number): Agreement {
  if (reference.length !== candidate.length || reference.length % vocab !== 0) {
    throw new RangeError(`logits of different sizes (${reference.length} vs ${candidate.length}, vocab ${vocab})`);
  }
  const positions = reference.length / vocab;
  let top1 = 0;
  let cosine = 0;
  let kl = 0;
  let maxAbsDiff = 0;
  for (let p = 0; p < positions; p++) {
    const a = reference.subarray(p * vocab, (p + 1) * vocab);
    const b = candidate.subarray(p * vocab, (p + 1) * vocab);
    if (argmax(a) === argmax(b)) top1 += 1;
    let dot = 0, na = 0, nb = 0;
    for (let i = 0; i < vocab; i++) {
      dot += a[i] * b[i]; na += a[i] * a[i]; nb += b[i] * b[i];
      maxAbsDiff = Math.max(maxAbsDiff, Math.abs(a[i] - b[i]));
    }
    cosine += na === 0 || nb === 0 ? (na === nb ? 1 : 0) : dot / Math.sqrt(na * nb);
    kl += klDivergence(a, b);
  }
  return { positions, top1Agreement: top1 / positions, meanCosine: cosine / positions, meanKl: kl / positions, maxAbsDiff };
}

/** KL(softmax(p) || softmax(q)), computed stably. */
export function klDivergence(p: ArrayLike<number>, q: ArrayLike<number>): number {
  const lp = logSoftmax(p);
  const lq = logSoftmax(q);
  let kl = 0;
  for (let i = 0; i < lp.length; i++) kl += Math.exp(lp[i]) * (lp[i] - lq[i]);
  return Math.max(0, kl);
}

function logSoftmax(x: ArrayLike<number>): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < x.length; i++) max = Math.max(max, x[i]);
  let sum = 0;
  for (let i = 0; i < x.length; i++) sum += Math.exp(x[i] - max);
  const log = Math.log(sum) + max;
  return Float64Array.from({ length: x.length }, (_, i) => x[i] - log);
}
