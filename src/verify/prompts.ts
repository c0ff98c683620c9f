/** Texts the tokenizer must round-trip exactly (encode → decode). */
export const ROUND_TRIP_TEXTS: readonly string[] = [
  'The quick brown fox jumps over the lazy dog.',
  'def mean(xs: list[float]) -> float:\n    return sum(xs) / len(xs)  # average\n',
  'Pi is 3.14159, e is 2.71828; 1e-9, 0x1F, 1,234,567 and 2024-06-01.',
  'Grüße, 世界! ¿Qué tal? 🙂 naïve café',
  '  two leading spaces,\ttabs\tand\nnew lines\n\n',
];

/** Prompt of the runtime check and the greedy sample (the agreement check runs the corpus, src/quality/corpus.ts). */
export const DEFAULT_PROMPT = 'The capital of France is Paris, and the capital of Germany is';

/**
 * Deterministic token ids used when the artifact's tokenizer cannot encode for this model
 * (a foreign or broken tokenizer): the runtime and agreement checks still test the model.
 */
export function syntheticIds(length: number, vocab: number, seed: number): number[] {
  let state = (seed * 2654435761 + 12345) >>> 0;
  return Array.from({ length }, () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state % vocab;
  });
}
