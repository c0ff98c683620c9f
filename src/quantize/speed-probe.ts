import type { KvCacheInfo } from '../onnx/kv-cache.js';
import { DecoderRunner, argmax } from '../runtime/decoder.js';
import { type RuntimeSession, openSession } from '../runtime/onnxruntime.js';

/** Greedy decode tokens/s of one model: the quantize gate's speed probe (a record, never a pass/fail). */
export interface DecodeSpeed {
  tokensPerSecond: number;
  steps: number;
  seconds: number;
}

export const PROBE_PROMPT_TOKENS = 8;
export const PROBE_WARMUP_STEPS = 2;
export const PROBE_STEPS = 16;

/**
 * Prefills PROBE_PROMPT_TOKENS fixed ids, runs PROBE_WARMUP_STEPS untimed decode steps, then
 * times PROBE_STEPS greedy decode steps (one token each, the KV cache fed back); tokens/s is one
 * over the median step. One session at a time, released before returning.
 */
export async function decodeSpeed(path: string, kv: KvCacheInfo, options: { threads?: number; steps?: number } = {}): Promise<DecodeSpeed> {
  const session = await openSession(path, { threads: options.threads });
  try {
    return await decodeSpeedOn(session, kv, options);
  } finally {
    await session.release();
  }
}

/** decodeSpeed() on a session the caller already holds (the quantize gate's own): no second load of the model. */
export async function decodeSpeedOn(session: RuntimeSession, kv: KvCacheInfo, options: { steps?: number } = {}): Promise<DecodeSpeed> {
  const steps = options.steps ?? PROBE_STEPS;
  const runner = new DecoderRunner(session, kv);
  let r = await runner.step(Array.from({ length: PROBE_PROMPT_TOKENS }, (_, i) => 1 + i));
  const next = () => argmax(r.logits.subarray((r.positions - 1) * r.vocab, r.positions * r.vocab));
  for (let i = 0; i < PROBE_WARMUP_STEPS; i++) r = await runner.step([next()]);
  const times: number[] = [];
  for (let i = 0; i < steps; i++) {
    const t0 = performance.now();
    r = await runner.step([next()]);
    times.push((performance.now() - t0) / 1000);
  }
  // the median step, not the mean: one step stalled by another process does not move it
  const median = [...times].sort((a, b) => a - b)[Math.floor(times.length / 2)];
  return { tokensPerSecond: 1 / median, steps, seconds: times.reduce((a, b) => a + b, 0) };
}
