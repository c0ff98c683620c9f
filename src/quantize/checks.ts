import { type ModelSummary, inspectFile } from '../onnx/summary.js';
import { DecoderRunner } from '../runtime/decoder.js';
import { type Agreement, compareLogits } from '../runtime/metrics.js';
import { openSession } from '../runtime/onnxruntime.js';

/**
 * What a quantized output must pass before a strategy counts as successful: quantized ops
 * present, no float MatMul/Gemm left on a constant weight, no full-table dequantize feeding
 * the embedding Gather, external data inside the folder and long enough, the same I/O and KV
 * cache as the input, a session that onnxruntime-node creates, and logits that agree.
 */
export interface OutputCheck {
  ok: boolean;
  failures: string[];
  summary?: ModelSummary;
  agreement?: Agreement;
}

/** A fixed input: deterministic token ids spread over the vocabulary. */
export function fixedTokens(vocab: number, count = 16): number[] {
  return Array.from({ length: count }, (_, i) => (i * 7919 + 13) % vocab);
}

export const AGREEMENT_FLOOR = { top1: 0.75, cosine: 0.95 } as const;

function ioSignature(s: ModelSummary): string {
  return JSON.stringify([s.inputs, s.outputs]);
}

/** Logits of a fixed input through the fp32 model, computed once and reused by every attempt. */
export interface ReferenceLogits { tokens: number[]; logits: Float32Array; vocab: number }

export function referenceLogits(input: ModelSummary, options: { threads?: number } = {}): () => Promise<ReferenceLogits | null> {
  let cached: Promise<ReferenceLogits | null> | undefined;
  return () => (cached ??= (async () => {
    if (!input.kvCache || input.kvCache.numKvHeads === null) return null;
    const vocabDim = input.outputs.find((o) => o.name === 'logits')?.shape?.at(-1);
    const tokens = fixedTokens(typeof vocabDim === 'number' ? vocabDim : 32);
    const session = await openSession(input.path, { threads: options.threads });
    try {
      const step = await new DecoderRunner(session, input.kvCache).step(tokens);
      return { tokens, logits: step.logits, vocab: step.vocab };
    } finally {
      await session.release();
    }
  })());
}

export async function checkQuantizedOutput(input: ModelSummary, outputPath: string, options: { threads?: number; reference?: () => Promise<ReferenceLogits | null> } = {}): Promise<OutputCheck> {
  const failures: string[] = [];
  let summary: ModelSummary;
  try {
    summary = inspectFile(outputPath);
  } catch (error) {
    return { ok: false, failures: [`unreadable output: ${(error as Error).message}`] };
  }
  const q = summary.quantization;
  if (!q.quantized) failures.push('no quantized ops in the output');
  if (q.floatConstantMatMuls.length) failures.push(`${q.floatConstantMatMuls.length} MatMul/Gemm with a constant weight left in float (${q.floatConstantMatMuls.slice(0, 3).join(', ')})`);
  if (q.fullTableDequantizeGathers.length) failures.push(`the embedding table is dequantized whole on every call (${q.fullTableDequantizeGathers.join(', ')})`);
  for (const f of summary.externalDataFiles) if (f.status !== 'ok') failures.push(`external data ${f.location}: ${f.status} (${f.reason ?? ''})`);
  if (ioSignature(summary) !== ioSignature(input)) failures.push('inputs/outputs differ from the fp32 model');
  if (JSON.stringify(summary.kvCache) !== JSON.stringify(input.kvCache)) failures.push('KV-cache I/O differs from the fp32 model');
  if (failures.length) return { ok: false, failures, summary };

  let agreement: Agreement | undefined;
  try {
    // The fp32 reference first (its session is released before the candidate's opens): one model in memory at a time.
    const reference = await (options.reference ?? referenceLogits(input, options))();
    const session = await openSession(outputPath, { threads: options.threads });
    try {
      if (reference && input.kvCache) {
        const b = await new DecoderRunner(session, input.kvCache).step(reference.tokens);
        agreement = compareLogits(reference.logits, b.logits, reference.vocab);
        if (agreement.top1Agreement < AGREEMENT_FLOOR.top1 || agreement.meanCosine < AGREEMENT_FLOOR.cosine) {
          failures.push(`logits disagree with fp32: top-1 ${agreement.top1Agreement.toFixed(3)}, cosine ${agreement.meanCosine.toFixed(4)} (floor ${AGREEMENT_FLOOR.top1} / ${AGREEMENT_FLOOR.cosine})`);
        }
      }
    } finally {
      await session.release();
    }
  } catch (error) {
    failures.push(`onnxruntime-node: ${(error as Error).message}`);
  }
  return { ok: failures.length === 0, failures, summary, agreement };
}
