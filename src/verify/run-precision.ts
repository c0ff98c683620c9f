import { isSphanaError } from '../errors.js';
import type { Manifest, Precision } from '../manifest/schema.js';
import type { KvCacheInfo } from '../onnx/kv-cache.js';
import { DecoderRunner, argmax } from '../runtime/decoder.js';
import { type Agreement, NEAR_TIE_NATS, compareLogits, poolAgreements } from '../runtime/metrics.js';
import { type HostTensor, type RuntimeSession, openSession } from '../runtime/onnxruntime.js';
import { sig } from './check.js';

/**
 * Everything the runtime-backed checks need from one precision, gathered while its session is
 * open (one session at a time keeps peak memory at one model): the cache-wiring comparison,
 * next-token logits over the agreement prompts, a greedy sample and timings.
 */
export interface PrecisionRun {
  precision: Precision;
  path: string;
  /** Set when the model could not be loaded or run; the other fields are then partial. */
  error?: string;
  loadSeconds?: number;
  cache?: CacheComparison;
  /** Against the reference (fp32) logits over the quality text, when given: pooled, and per sequence. */
  agreement?: Agreement & { prompts: number; perPrompt: Array<{ positions: number; top1Agreement: number; nearTieTop1: number; meanCosine: number; meanKl: number }> };
  sample?: { promptTokens: number; tokens: number[] };
  speed?: SpeedFigures;
  /** Wall seconds spent per check while this precision's session was open. */
  seconds: { runtime: number; agreement: number; sample: number; speed: number };
}

export interface CacheComparison {
  promptTokens: number;
  decodeSteps: number;
  /** Positions compared between the cached path and the full-sequence run. */
  positions: number;
  maxAbsDiff: number;
  /** Largest |logit| of the full run over the compared positions (the scale the difference is judged against). */
  logitScale: number;
  top1Matches: number;
  /** Shape problems of the presents (wrong kv heads / length / head dim). */
  presentProblems: string[];
}

export interface SpeedFigures {
  prefillTokens: number;
  prefillSeconds: number;
  prefillTokensPerSecond: number;
  decodeTokens: number;
  decodeSeconds: number;
  decodeTokensPerSecond: number;
  /** process.resourceUsage().maxRSS after this precision ran: the process's peak so far. */
  peakRssBytes: number;
}

export interface RunInputs {
  /** Prompt of the runtime check and the sample. */
  prompt: number[];
  /** Agreement sequences (token ids, teacher-forced): the corpus through the tokenizer, or synthetic ids. */
  agreementPrompts: number[][];
  /** ε of the margin-aware top-1 (nats). */
  nearTieNats?: number;
  /** fp32 logits of each agreement prompt (all positions), when this is a quantized run. */
  reference?: Float32Array[];
  /** Keep this run's agreement logits (the reference run). */
  keepLogits: boolean;
  /** Prompt for the prefill speed figure. */
  speedPrompt: number[];
  tokens: number;
  threads: number;
  /** Which measurements to take (the checks asked for). */
  phases: { runtime: boolean; agreement: boolean; sample: boolean; speed: boolean };
  onProgress?: (message: string) => void;
}

export function kvInfoOf(manifest: Manifest): KvCacheInfo {
  const kv = manifest.kvCache;
  return { ...kv, source: { numKvHeads: null, headDim: null } };
}

/** Wraps a session to remember the dims of the last run's outputs. */
function recording(session: RuntimeSession): { session: RuntimeSession; lastDims: () => Record<string, number[]> } {
  let last: Record<string, number[]> = {};
  return {
    session: {
      ...session,
      path: session.path,
      inputNames: session.inputNames,
      outputNames: session.outputNames,
      async run(feeds: Record<string, HostTensor>, outputs?: readonly string[]) {
        const out = await session.run(feeds, outputs);
        last = Object.fromEntries(Object.entries(out).map(([k, v]) => [k, v.dims]));
        return out;
      },
      release: () => session.release(),
    },
    lastDims: () => last,
  };
}

export async function runPrecision(manifest: Manifest, precision: Precision, modelFile: string, inputs: RunInputs): Promise<PrecisionRun & { logits?: Float32Array[] }> {
  const run: PrecisionRun & { logits?: Float32Array[] } = { precision, path: modelFile, seconds: { runtime: 0, agreement: 0, sample: 0, speed: 0 } };
  let phase: keyof PrecisionRun['seconds'] = 'runtime';
  let mark = performance.now();
  const enter = (next: keyof PrecisionRun['seconds']) => {
    const now = performance.now();
    run.seconds[phase] += (now - mark) / 1000;
    phase = next;
    mark = now;
  };
  const progress = (m: string) => inputs.onProgress?.(`${precision}: ${m}`);
  let session: RuntimeSession | undefined;
  try {
    progress('opening an onnxruntime session');
    const t0 = performance.now();
    session = await openSession(modelFile, { threads: inputs.threads });
    run.loadSeconds = sig((performance.now() - t0) / 1000);
    const rec = recording(session);
    const kv = kvInfoOf(manifest);
    const runner = new DecoderRunner(rec.session, kv);

    if (inputs.phases.runtime) {
      progress('cached decode against a full-sequence run');
      run.cache = await compareCachedWithFull(runner, kv, inputs.prompt, inputs.tokens, rec.lastDims);
    }

    enter('agreement');
    const logits: Float32Array[] = [];
    const compared: Agreement[] = [];
    if (inputs.phases.agreement && (inputs.keepLogits || inputs.reference)) progress(`logits over ${inputs.agreementPrompts.length} prompts`);
    for (const [i, ids] of inputs.phases.agreement && (inputs.keepLogits || inputs.reference) ? inputs.agreementPrompts.entries() : []) {
      runner.reset();
      const r = await runner.step(ids);
      progress(`agreement prompts ${i + 1}/${inputs.agreementPrompts.length}`);
      const rows = Float32Array.from(r.logits);
      if (inputs.keepLogits) logits.push(rows);
      const ref = inputs.reference?.[i];
      if (ref) {
        if (ref.length !== rows.length) throw new RangeError(`logits of ${ref.length / ids.length} entries in fp32 but ${r.vocab} in ${precision}`);
        compared.push(compareLogits(ref, rows, r.vocab, ids, inputs.nearTieNats ?? NEAR_TIE_NATS));
      }
    }
    if (inputs.keepLogits) run.logits = logits;
    if (compared.length) {
      run.agreement = {
        ...poolAgreements(compared), prompts: compared.length,
        perPrompt: compared.map((a) => ({ positions: a.positions, top1Agreement: sig(a.top1Agreement), nearTieTop1: sig(a.nearTieTop1), meanCosine: sig(a.meanCosine, 6), meanKl: sig(a.meanKl) })),
      };
    }

    enter('sample');
    if (inputs.phases.sample) {
      progress(`greedy sample of ${inputs.tokens} tokens`);
      const sample = await runner.greedy(inputs.prompt, inputs.tokens);
      run.sample = { promptTokens: inputs.prompt.length, tokens: sample.tokens };
    }

    enter('speed');
    if (inputs.phases.speed) {
      progress('timing prefill and decode');
      run.speed = await timeSpeed(runner, inputs.speedPrompt, inputs.tokens);
    }
  } catch (error) {
    if (!isSphanaError(error) && !(error instanceof RangeError)) throw error;
    run.error = (error as Error).message;
  } finally {
    await session?.release();
    enter(phase);
  }
  return run;
}

/**
 * Prefill from an empty cache, then `steps` decode steps feeding the presents back; the same
 * tokens are then run as one sequence without cache. Every decode position's logits must match.
 */
async function compareCachedWithFull(runner: DecoderRunner, kv: KvCacheInfo, prompt: number[], steps: number, lastDims: () => Record<string, number[]>): Promise<CacheComparison> {
  const presentProblems: string[] = [];
  const expectPresents = (length: number) => {
    const dims = lastDims();
    for (let layer = 0; layer < kv.layers; layer++) {
      for (const template of [kv.presentKeyTemplate!, kv.presentValueTemplate!]) {
        const name = template.replace('%d', String(layer));
        const want = [1, kv.numKvHeads!, length, kv.headDim!];
        const got = dims[name];
        if (!got || got.join(',') !== want.join(',')) presentProblems.push(`${name} is [${got?.join(', ') ?? 'absent'}], expected [${want.join(', ')}]`);
      }
    }
  };
  runner.reset();
  let r = await runner.step(prompt);
  expectPresents(prompt.length);
  const cached: Float32Array[] = [lastRow(r.logits, r.positions, r.vocab)];
  const fed: number[] = [];
  for (let i = 0; i < steps; i++) {
    const next = argmax(cached[cached.length - 1]);
    fed.push(next);
    r = await runner.step([next]);
    expectPresents(prompt.length + i + 1);
    cached.push(lastRow(r.logits, r.positions, r.vocab));
  }
  runner.reset();
  const full = await runner.step([...prompt, ...fed]);
  let maxAbsDiff = 0;
  let logitScale = 0;
  let top1Matches = 0;
  // A model that returns only the last position's logits is compared there alone.
  const lastOnly = full.positions !== prompt.length + steps;
  for (const [i, row] of cached.entries()) {
    if (lastOnly && i !== cached.length - 1) continue;
    const p = lastOnly ? full.positions - 1 : prompt.length - 1 + i;
    const ref = full.logits.subarray(p * full.vocab, (p + 1) * full.vocab);
    if (argmax(ref) === argmax(row)) top1Matches += 1;
    for (let j = 0; j < ref.length; j++) {
      maxAbsDiff = Math.max(maxAbsDiff, Math.abs(ref[j] - row[j]) || 0);
      logitScale = Math.max(logitScale, Math.abs(ref[j]));
    }
    if (row.some((v) => Number.isNaN(v))) maxAbsDiff = Infinity;
  }
  runner.reset();
  return { promptTokens: prompt.length, decodeSteps: steps, positions: lastOnly ? 1 : cached.length, maxAbsDiff: sig(maxAbsDiff), logitScale: sig(logitScale), top1Matches, presentProblems: [...new Set(presentProblems)].slice(0, 8) };
}

async function timeSpeed(runner: DecoderRunner, prompt: number[], steps: number): Promise<SpeedFigures> {
  const prefills: number[] = [];
  let last: Float32Array = new Float32Array(0);
  for (let i = 0; i < 3; i++) {
    runner.reset();
    const t = performance.now();
    const r = await runner.step(prompt);
    prefills.push((performance.now() - t) / 1000);
    last = lastRow(r.logits, r.positions, r.vocab);
  }
  prefills.sort((a, b) => a - b);
  const prefillSeconds = prefills[1];
  const t = performance.now();
  for (let i = 0; i < steps; i++) {
    const r = await runner.step([argmax(last)]);
    last = lastRow(r.logits, r.positions, r.vocab);
  }
  const decodeSeconds = (performance.now() - t) / 1000;
  runner.reset();
  return {
    prefillTokens: prompt.length,
    prefillSeconds: sig(prefillSeconds),
    prefillTokensPerSecond: sig(prompt.length / prefillSeconds),
    decodeTokens: steps,
    decodeSeconds: sig(decodeSeconds),
    decodeTokensPerSecond: sig(steps / decodeSeconds),
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
  };
}

function lastRow(logits: Float32Array, positions: number, vocab: number): Float32Array {
  return Float32Array.from(logits.subarray((positions - 1) * vocab, positions * vocab));
}
