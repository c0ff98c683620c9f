/** Texts the tokenizer must round-trip exactly (encode → decode). */
export const ROUND_TRIP_TEXTS: readonly string[] = [
  'The quick brown fox jumps over the lazy dog.',
  'def mean(xs: list[float]) -> float:\n    return sum(xs) / len(xs)  # average\n',
  'Pi is 3.14159, e is 2.71828; 1e-9, 0x1F, 1,234,567 and 2024-06-01.',
  'Grüße, 世界! ¿Qué tal? 🙂 naïve café',
  '  two leading spaces,\ttabs\tand\nnew lines\n\n',
];

/**
 * Prompts for the agreement check: prose, code, numbers, non-ASCII. Fixed so figures are
 * comparable between runs and artifacts.
 */
export const AGREEMENT_PROMPTS: readonly string[] = [
  'The capital of France is Paris, and the capital of Germany is',
  'def fibonacci(n):\n    if n < 2:\n        return n\n    return',
  '1, 1, 2, 3, 5, 8, 13, 21, 34,',
  'Grüße, 世界! ¿Qué tal? 🙂 Un café, por favor.',
  'Once upon a time, in a small village by the sea, there lived',
];

export const DEFAULT_PROMPT = AGREEMENT_PROMPTS[0];

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
