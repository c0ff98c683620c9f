import { UsageError } from '../errors.js';
import type { Int4Algorithm, Int8Scheme, QuantizePrecision, TableBits } from '../vocabulary.js';
import type { QuantizeOptions } from './run.js';

/** The quantization flags `sphana quantize` and `sphana export` share, as commander hands them over (parsed and checked one by one in src/cli/main.ts). */
export interface QuantFlags {
  int8Scheme?: Int8Scheme;
  accuracyLevel?: number;
  blockSize?: number;
  symmetric?: boolean;
  headBits?: TableBits;
  embeddingBits?: TableBits;
  int4Algorithm?: Int4Algorithm;
}

export const QUANT_FLAG_HELP = {
  int8Scheme: 'int8: weight-only (MatMulNBits 8-bit blocks, LM head included) | dynamic (DynamicQuantizeLinear + MatMulInteger)',
  accuracyLevel: 'MatMulNBits accuracy_level 0..4 (4 = int8 activations, fast; 0 = float); default: the gate tries 4, then the LM head at 0, then 0',
  blockSize: 'int4 block size along K: 16 | 32 | 64 | 128 (default 32)',
  symmetric: 'int4: symmetric blocks (no zero points; default asymmetric)',
  headBits: 'int4: bits of an untied LM head, 8 | 4 (default 8: mixed precision)',
  embeddingBits: 'weight-only: bits of the token embedding and of a tied LM head, 8 | 4 (default 8)',
  int4Algorithm: "int4: rtn (onnxruntime's block quantizer, integer zero points) | rtn-float-zp (min/max blocks, float zero points: llama.cpp's Q4_1 grid) | hqq (onnxruntime's half-quadratic solver)",
} as const;

/** Checks the flags together; a flag that does not apply to the precision is a usage error, not silently ignored. */
export function parseQuantFlags(precision: QuantizePrecision, f: QuantFlags): Pick<QuantizeOptions, 'int8Scheme' | 'accuracyLevel' | 'int4'> {
  const { int8Scheme, accuracyLevel, blockSize, headBits, embeddingBits, int4Algorithm: algorithm } = f;
  if (precision === 'int4' && int8Scheme === 'dynamic') throw new UsageError('--int8-scheme applies to --precision int8 only');
  if (int8Scheme === 'dynamic' && accuracyLevel !== undefined) throw new UsageError('--accuracy-level applies to weight-only schemes, not --int8-scheme dynamic');
  if (precision === 'int8' && (blockSize !== undefined || f.symmetric || headBits !== undefined || algorithm !== undefined)) {
    throw new UsageError('--block-size, --symmetric, --head-bits and --int4-algorithm apply to --precision int4');
  }
  if (f.symmetric && algorithm === 'rtn-float-zp') throw new UsageError('--symmetric does not apply to --int4-algorithm rtn-float-zp (its zero points are floats)', { hint: 'drop --symmetric, or use --int4-algorithm rtn' });
  const int4: QuantizeOptions['int4'] = {};
  if (blockSize !== undefined) int4.blockSize = blockSize;
  if (f.symmetric) int4.symmetric = true;
  if (headBits !== undefined) int4.headBits = headBits;
  if (embeddingBits !== undefined) int4.embeddingBits = embeddingBits;
  if (algorithm !== undefined) int4.algorithm = algorithm;
  return {
    ...(int8Scheme ? { int8Scheme } : {}),
    ...(accuracyLevel !== undefined ? { accuracyLevel } : {}),
    ...(Object.keys(int4).length ? { int4 } : {}),
  };
}
