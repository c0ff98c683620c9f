/**
 * The words sphana's commands, bridge requests, pipeline and manifest share, and their defaults.
 * The Python bridge keeps the same table in python-bridge/sphana_bridge/vocabulary.py;
 * test/python/bridge-contract.test.ts fails when the two differ. This module imports nothing.
 */

/** Every precision an artifact can hold (the manifest's models list). */
export const PRECISIONS = ['fp32', 'fp16', 'int8', 'int4'] as const;
export type Precision = (typeof PRECISIONS)[number];

/** The precisions `quantize` produces. */
export const QUANT_PRECISIONS = ['int8', 'int4'] as const satisfies readonly Precision[];
export type QuantizePrecision = (typeof QUANT_PRECISIONS)[number];

/** The quantization strategies, in the fallback order of `auto`. */
export const STRATEGIES = ['direct', 'external-data', 'embedding-split'] as const;
export type QuantizeStrategy = (typeof STRATEGIES)[number];
export const STRATEGY_CHOICES = ['auto', ...STRATEGIES] as const;
export type StrategyChoice = (typeof STRATEGY_CHOICES)[number];

/** int8: weight-only MatMulNBits 8-bit blocks, or DynamicQuantizeLinear + MatMulInteger. */
export const INT8_SCHEMES = ['weight-only', 'dynamic'] as const;
export type Int8Scheme = (typeof INT8_SCHEMES)[number];

/** The dynamic int8 scheme's engine: tensor by tensor (flat memory), or onnxruntime's quantize_dynamic (same bytes). */
export const INT8_ENGINES = ['streaming', 'ort'] as const;
export type Int8Engine = (typeof INT8_ENGINES)[number];

/** int4 block quantizers: onnxruntime's round-to-nearest (integer zero points), round-to-nearest with float zero points (llama.cpp's Q4_1 scheme), or onnxruntime's HQQ solver. */
export const INT4_ALGORITHMS = ['rtn', 'rtn-float-zp', 'hqq'] as const;
export type Int4Algorithm = (typeof INT4_ALGORITHMS)[number];

/** MatMulNBits accuracy_level: 4 = int8 activations (fast), 0 = float activations. */
export const ACCURACY_LEVELS = [0, 1, 2, 3, 4] as const;
export type AccuracyLevel = (typeof ACCURACY_LEVELS)[number];

/** Weight-only block sizes along K the CLI offers. */
export const BLOCK_SIZES = [16, 32, 64, 128] as const;

/** Bits of a weight-only table kept apart (LM head, token embedding). */
export const TABLE_BITS = [8, 4] as const;
export type TableBits = (typeof TABLE_BITS)[number];

export const EXPORTERS = ['dynamo', 'torchscript'] as const;
export type Exporter = (typeof EXPORTERS)[number];

/** onnxruntime fusions between export and quantize. */
export const OPTIMIZE_MODES = ['none', 'ort'] as const;
export type OptimizeMode = (typeof OPTIMIZE_MODES)[number];
/** The default: onnxruntime's fusions, stamped per layer from a fused template and parity-gated (the unfused graph when they fail). */
export const DEFAULT_OPTIMIZE: OptimizeMode = 'ort';

/** Random weights from a preset's architecture. */
export const SYNTHETIC_SIZES = ['tiny', 'full'] as const;
export type SyntheticSize = (typeof SYNTHETIC_SIZES)[number];

/** The defaults both sides apply when a request leaves a field out. */
export const QUANT_DEFAULTS = {
  int8Scheme: 'weight-only',
  int8Engine: 'streaming',
  algorithm: 'rtn',
  accuracyLevel: 4,
  blockSize: 32,
  embeddingBits: 8,
  symmetric: false,
  perChannel: false,
} as const satisfies {
  int8Scheme: Int8Scheme; int8Engine: Int8Engine; algorithm: Int4Algorithm; accuracyLevel: AccuracyLevel;
  blockSize: (typeof BLOCK_SIZES)[number]; embeddingBits: TableBits; symmetric: boolean; perChannel: boolean;
};

export const EXPORT_DEFAULTS = { exporter: 'dynamo' } as const satisfies { exporter: Exporter };

/** The vocabulary as the contract test compares it with the bridge's. */
export const SHARED_VOCABULARY = {
  quantPrecisions: QUANT_PRECISIONS,
  strategies: STRATEGIES,
  int8Schemes: INT8_SCHEMES,
  int8Engines: INT8_ENGINES,
  int4Algorithms: INT4_ALGORITHMS,
  accuracyLevels: ACCURACY_LEVELS,
  tableBits: TABLE_BITS,
  exporters: EXPORTERS,
  quantDefaults: QUANT_DEFAULTS,
  exportDefaults: EXPORT_DEFAULTS,
} as const;
