import { InputError } from '../errors.js';
import type { KvCacheInfo } from '../onnx/kv-cache.js';
import type { HostTensor, RuntimeSession } from './onnxruntime.js';

/**
 * Drives a decoder with a KV cache: a prefill from an empty cache, then decode steps that
 * feed the presents back as the next pasts. Dimensions come from the model (KvCacheInfo),
 * never from constants.
 */

export interface StepResult {
  /** Logits of every position of this step, row-major [positions, vocab]. */
  logits: Float32Array;
  positions: number;
  vocab: number;
}

export class DecoderRunner {
  private past: Record<string, HostTensor> | null = null;
  private pastLength = 0;

  constructor(private readonly session: RuntimeSession, private readonly kv: KvCacheInfo) {
    if (kv.numKvHeads === null || kv.headDim === null) {
      throw new InputError('E_KV_UNKNOWN', `${session.path}: KV-cache dimensions are unknown (${kv.reason ?? 'symbolic'})`, {
        hint: 'export with sphana so the graph or its metadata states kv heads and head dim',
      });
    }
    if (!kv.presentKeyTemplate || !kv.presentValueTemplate) {
      throw new InputError('E_KV_UNKNOWN', `${session.path}: no present outputs for the KV cache`);
    }
  }

  reset(): void {
    this.past = null;
    this.pastLength = 0;
  }

  get length(): number {
    return this.pastLength;
  }

  /** Runs `ids` (batch 1) on top of the current cache and keeps the presents. */
  async step(ids: number[]): Promise<StepResult> {
    const { kv, session } = this;
    const seq = ids.length;
    const total = this.pastLength + seq;
    const feeds: Record<string, HostTensor> = {
      input_ids: { type: 'int64', data: BigInt64Array.from(ids, BigInt), dims: [1, seq] },
    };
    if (session.inputNames.includes('attention_mask')) {
      feeds.attention_mask = { type: 'int64', data: new BigInt64Array(total).fill(1n), dims: [1, total] };
    }
    if (session.inputNames.includes('position_ids')) {
      feeds.position_ids = { type: 'int64', data: BigInt64Array.from({ length: seq }, (_, i) => BigInt(this.pastLength + i)), dims: [1, seq] };
    }
    for (let layer = 0; layer < kv.layers; layer++) {
      for (const [pastT, presentT] of [[kv.pastKeyTemplate, kv.presentKeyTemplate!], [kv.pastValueTemplate, kv.presentValueTemplate!]]) {
        const name = pastT.replace('%d', String(layer));
        feeds[name] = this.past?.[presentT.replace('%d', String(layer))] ?? emptyPast(kv);
      }
    }
    const out = await session.run(feeds);
    const logits = out.logits;
    if (!logits) throw new InputError('E_NO_LOGITS', `${session.path}: the model has no 'logits' output`);
    this.past = out;
    this.pastLength = total;
    const vocab = logits.dims[logits.dims.length - 1];
    const positions = logits.dims.length === 3 ? logits.dims[1] : 1;
    return { logits: toFloat32(logits), positions, vocab };
  }

  /** Greedy generation: prefill `prompt`, then `steps` tokens. Returns the generated ids. */
  async greedy(prompt: number[], steps: number): Promise<{ tokens: number[]; lastLogits: Float32Array[] }> {
    this.reset();
    let result = await this.step(prompt);
    const tokens: number[] = [];
    const lastLogits: Float32Array[] = [];
    for (let i = 0; i < steps; i++) {
      const last = result.logits.subarray((result.positions - 1) * result.vocab, result.positions * result.vocab);
      lastLogits.push(Float32Array.from(last));
      const next = argmax(last);
      tokens.push(next);
      if (i + 1 < steps) result = await this.step([next]);
    }
    return { tokens, lastLogits };
  }
}

function emptyPast(kv: KvCacheInfo): HostTensor {
  const dims = [1, kv.numKvHeads!, 0, kv.headDim!];
  return kv.dtype === 'float16' ? { type: 'float16', data: new Uint16Array(0), dims } : { type: 'float32', data: new Float32Array(0), dims };
}

function toFloat32(t: HostTensor): Float32Array {
  if (t.data instanceof Float32Array) return t.data;
  if (t.type === 'float16' && t.data instanceof Uint16Array) return Float32Array.from(t.data, halfToFloat);
  throw new InputError('E_LOGITS_TYPE', `logits of type ${t.type} are not supported`);
}

function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * 2 ** -14 * (f / 1024);
  if (e === 31) return f ? NaN : s * Infinity;
  return s * 2 ** (e - 15) * (1 + f / 1024);
}

export function argmax(values: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}
