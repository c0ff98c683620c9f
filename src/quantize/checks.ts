import { type ModelSummary, inspectFile } from '../onnx/summary.js';
import { DecoderRunner } from '../runtime/decoder.js';
import { type QualityText, type TokenizerSource, qualityTextFromDir } from '../quality/corpus-ids.js';
import { type QualityGate, type QualityReport, type QuantizedPrecision, gateFor, qualityReport } from '../quality/gates.js';
import { type Agreement, AgreementAccumulator } from '../runtime/metrics.js';
import { openSession } from '../runtime/onnxruntime.js';
import { type DecodeSpeed, decodeSpeedOn } from './speed-probe.js';

/**
 * What a quantized output must pass before a strategy counts as successful: quantized ops
 * present, no float MatMul/Gemm left on a constant weight, no full-table dequantize feeding
 * the embedding Gather, external data inside the folder and long enough, the same I/O and KV
 * cache as the input, a session that onnxruntime-node creates, and the quality gate of its
 * precision family on the shipped corpus (src/quality/).
 */
export interface OutputCheck {
  ok: boolean;
  failures: string[];
  /** One line: the quality figures when it passed, what failed otherwise. */
  reason: string;
  summary?: ModelSummary;
  agreement?: Agreement;
  /** The quality section (figures, gate, verdict) when the logits were compared. */
  quality?: QualityReport;
  /** Decode tokens/s of the output, measured on the gate's own session once it passed (`speedProbe`). */
  speed?: DecodeSpeed | null;
}

function ioSignature(s: ModelSummary): string {
  return JSON.stringify([s.inputs, s.outputs]);
}

/**
 * fp32 logits of the quality text (the shipped corpus through the model's tokenizer,
 * teacher-forced; synthetic ids only without a usable real tokenizer), computed once and
 * reused by every attempt; with `speedProbe`, the fp32 decode speed measured on the same
 * session (null when it failed), so the fp32 model is loaded once per quantize run.
 */
export interface ReferenceLogits { text: QualityText; logits: Float32Array[]; vocab: number; speed: DecodeSpeed | null }

export function referenceLogits(input: ModelSummary, options: { threads?: number; tokenizer?: TokenizerSource | null; speedProbe?: boolean; text?: QualityText } = {}): () => Promise<ReferenceLogits | null> {
  let cached: Promise<ReferenceLogits | null> | undefined;
  return () => (cached ??= (async () => {
    if (!input.kvCache || input.kvCache.numKvHeads === null) return null;
    const vocabDim = input.outputs.find((o) => o.name === 'logits')?.shape?.at(-1);
    const text = options.text ?? qualityTextFromDir(options.tokenizer ?? null, typeof vocabDim === 'number' ? vocabDim : 32);
    const session = await openSession(input.path, { threads: options.threads });
    try {
      const runner = new DecoderRunner(session, input.kvCache);
      const logits: Float32Array[] = [];
      let vocab = 0;
      for (const ids of text.sequences) {
        runner.reset();
        const step = await runner.step(ids);
        logits.push(Float32Array.from(step.logits));
        vocab = step.vocab;
      }
      const speed = options.speedProbe ? await decodeSpeedOn(session, input.kvCache).catch(() => null) : null;
      return { text, logits, vocab, speed };
    } finally {
      await session.release();
    }
  })());
}

export interface CheckOptions {
  threads?: number;
  reference?: () => Promise<ReferenceLogits | null>;
  /** Where the fp32 model's tokenizer is (when `reference` is not given). */
  tokenizer?: TokenizerSource | null;
  /** Which precision family's quality gate applies (default int8). */
  precision?: QuantizedPrecision;
  /** Overrides of that gate's thresholds. */
  gate?: Partial<QualityGate>;
  /** Once every check passed, measure the output's decode speed on the same session (OutputCheck.speed). */
  speedProbe?: boolean;
}

/**
 * The acceptance check of one quantized output: the structural checks, then the quality gate
 * of its precision family on the corpus (teacher-forced, against fp32). `ok` is the verdict,
 * `reason` says why, `quality` carries the figures.
 */
export async function checkQuantizedOutput(input: ModelSummary, outputPath: string, options: CheckOptions = {}): Promise<OutputCheck> {
  const failures: string[] = [];
  let summary: ModelSummary;
  try {
    summary = inspectFile(outputPath);
  } catch (error) {
    const failure = `unreadable output: ${(error as Error).message}`;
    return { ok: false, failures: [failure], reason: failure };
  }
  const q = summary.quantization;
  if (!q.quantized) failures.push('no quantized ops in the output');
  if (q.floatConstantMatMuls.length) failures.push(`${q.floatConstantMatMuls.length} MatMul/Gemm with a constant weight left in float (${q.floatConstantMatMuls.slice(0, 3).join(', ')})`);
  if (q.fullTableDequantizeGathers.length) failures.push(`the embedding table is dequantized whole on every call (${q.fullTableDequantizeGathers.join(', ')})`);
  for (const f of summary.externalDataFiles) if (f.status !== 'ok') failures.push(`external data ${f.location}: ${f.status} (${f.reason ?? ''})`);
  if (ioSignature(summary) !== ioSignature(input)) failures.push('inputs/outputs differ from the fp32 model');
  if (JSON.stringify(summary.kvCache) !== JSON.stringify(input.kvCache)) failures.push('KV-cache I/O differs from the fp32 model');
  if (failures.length) return { ok: false, failures, reason: failures.join('; '), summary };

  let agreement: Agreement | undefined;
  let quality: QualityReport | undefined;
  let speed: DecodeSpeed | null | undefined;
  const precision = options.precision ?? 'int8';
  try {
    // The fp32 reference first (its session is released before the candidate's opens): one model in memory at a time.
    const reference = await (options.reference ?? referenceLogits(input, options))();
    const session = await openSession(outputPath, { threads: options.threads });
    try {
      if (reference && input.kvCache) {
        const runner = new DecoderRunner(session, input.kvCache);
        const gate = gateFor(precision, options.gate);
        const acc = new AgreementAccumulator(gate.nearTieNats);
        for (const [i, ids] of reference.text.sequences.entries()) {
          runner.reset();
          const b = await runner.step(ids);
          acc.add(reference.logits[i], b.logits, reference.vocab, ids);
        }
        agreement = acc.result();
        quality = qualityReport(precision, agreement, gate, { source: reference.text.source, corpusVersion: reference.text.corpusVersion, sequences: reference.text.sequences.length });
        if (!quality.passed) failures.push(`${precision} quality gate on the ${reference.text.source === 'corpus' ? 'corpus' : 'synthetic ids'} (${agreement.positions} positions): ${quality.reason}`);
      }
      if (options.speedProbe && input.kvCache && failures.length === 0) speed = await decodeSpeedOn(session, input.kvCache).catch(() => null);
    } finally {
      await session.release();
    }
  } catch (error) {
    failures.push(`onnxruntime-node: ${(error as Error).message}`);
  }
  const ok = failures.length === 0;
  return { ok, failures, reason: ok ? (quality ? `${precision}: ${quality.reason}` : 'structural checks passed') : failures.join('; '), summary, agreement, quality, ...(speed === undefined ? {} : { speed }) };
}
