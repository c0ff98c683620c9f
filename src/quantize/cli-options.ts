import { UsageError } from '../errors.js';
import type { Int8Scheme } from '../python/bridge-commands.js';
import type { QuantizeOptions } from './run.js';

/** The quantization flags `sphana quantize` and `sphana export` share, as commander hands them over. */
export interface QuantFlags {
  int8Scheme?: string;
  accuracyLevel?: string;
  blockSize?: string;
  symmetric?: boolean;
  headBits?: string;
  embeddingBits?: string;
  int4Algorithm?: string;
}

export const QUANT_FLAG_HELP = {
  int8Scheme: 'int8: weight-only (MatMulNBits 8-bit blocks, LM head included) | dynamic (DynamicQuantizeLinear + MatMulInteger)',
  accuracyLevel: 'MatMulNBits accuracy_level 0..4 (4 = int8 activations, fast; 0 = float); default: the gate tries 4, then the LM head at 0, then 0',
  blockSize: 'int4 block size along K: 32 | 64 | 128 (default 32)',
  symmetric: 'int4: symmetric blocks (no zero points; default asymmetric)',
  headBits: 'int4: bits of an untied LM head, 8 | 4 (default 8: mixed precision)',
  embeddingBits: 'weight-only: bits of the token embedding and of a tied LM head, 8 | 4 (default 8)',
  int4Algorithm: "int4: rtn (onnxruntime's block quantizer) | hqq (its half-quadratic solver)",
} as const;

function oneOf<T extends string | number>(raw: string | undefined, allowed: readonly T[], flag: string, parse: (s: string) => T): T | undefined {
  if (raw === undefined) return undefined;
  const v = parse(raw);
  if (!(allowed as readonly (string | number)[]).includes(v)) throw new UsageError(`${flag} must be one of ${allowed.join(', ')}`);
  return v;
}

/** Validates the flags; a flag that does not apply to the precision is a usage error, not silently ignored. */
export function parseQuantFlags(precision: 'int8' | 'int4', f: QuantFlags): Pick<QuantizeOptions, 'int8Scheme' | 'accuracyLevel' | 'int4'> {
  const int8Scheme = oneOf<Int8Scheme>(f.int8Scheme, ['weight-only', 'dynamic'], '--int8-scheme', (s) => s as Int8Scheme);
  const accuracyLevel = oneOf(f.accuracyLevel, [0, 1, 2, 3, 4], '--accuracy-level', (s) => (/^\d$/.test(s) ? Number(s) : NaN));
  const blockSize = oneOf(f.blockSize, [16, 32, 64, 128], '--block-size', (s) => (/^\d+$/.test(s) ? Number(s) : NaN));
  const headBits = oneOf(f.headBits, [8, 4] as const, '--head-bits', (s) => Number(s) as 8 | 4);
  const embeddingBits = oneOf(f.embeddingBits, [8, 4] as const, '--embedding-bits', (s) => Number(s) as 8 | 4);
  const algorithm = oneOf(f.int4Algorithm, ['rtn', 'hqq'] as const, '--int4-algorithm', (s) => s as 'rtn' | 'hqq');
  if (precision === 'int4' && int8Scheme === 'dynamic') throw new UsageError('--int8-scheme applies to --precision int8 only');
  if (int8Scheme === 'dynamic' && accuracyLevel !== undefined) throw new UsageError('--accuracy-level applies to weight-only schemes, not --int8-scheme dynamic');
  if (precision === 'int8' && (blockSize !== undefined || f.symmetric || headBits !== undefined || algorithm !== undefined)) {
    throw new UsageError('--block-size, --symmetric, --head-bits and --int4-algorithm apply to --precision int4');
  }
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
