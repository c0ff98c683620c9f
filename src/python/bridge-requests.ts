/**
 * What goes over the wire to each of the bridge's entry points (python-bridge/sphana_bridge/cli.py
 * COMMANDS) and back: one request type and one result type a command, and REQUEST_FIELDS, each
 * request type's field list, which test/python/bridge-contract.test.ts compares with what the
 * bridge accepts. The typed functions that send them, with their reply parsers, are in
 * ./entry-points.ts.
 */
import type { ArchitectureFacts } from '../models/facts.js';
import type { BridgeFile } from './reply-shape.js';
import type {
  Exporter, Int4Algorithm, Int8Engine, Int8Scheme, OptimizeMode, QuantizePrecision, QuantizeStrategy, TableBits,
} from '../vocabulary.js';

/** Every field of a request type, once: the compiler rejects a missing or an extra one. */
export const fields = <T>(all: { [K in keyof Required<T>]: true }): string[] => Object.keys(all).sort();

// ---- versions -------------------------------------------------------------------------------

export interface BridgeVersions { python: string; packages: Record<string, string> }

// ---- quantize -------------------------------------------------------------------------------

export interface QuantizeRequest {
  input: string;
  output: string;
  strategy: QuantizeStrategy;
  precision: QuantizePrecision;
  perChannel: boolean;
  protoLimitBytes: number;
  blockSize?: number;
  /** int8 dynamic scheme, direct/external-data: the bridge's tensor-by-tensor engine (default; ~0.4× memory) or onnxruntime's quantize_dynamic (same bytes). */
  int8Engine?: Int8Engine;
  /** int8: weight-only MatMulNBits blocks (default) or DynamicQuantizeLinear + MatMulInteger. */
  int8Scheme?: Int8Scheme;
  /** MatMulNBits accuracy_level (weight-only): 4 = int8 activations (fast), 0 = float activations. */
  accuracyLevel?: number;
  /** The LM head's accuracy_level when it differs (kept at higher precision). */
  headAccuracyLevel?: number;
  /** The accuracy_level of the MatMuls fed by a product of two activations (a gated MLP's down projections). */
  gatedAccuracyLevel?: number;
  /** The bits of those gated-MLP down projections when they differ. */
  gatedBits?: TableBits;
  /** int4: bits of an untied LM head (8 = mixed precision). */
  headBits?: TableBits;
  /** weight-only: bits of the token embedding (and of a tied head, which shares its table). */
  embeddingBits?: TableBits;
  /** int4: symmetric blocks (no zero points) instead of asymmetric. */
  symmetric?: boolean;
  /** int4: onnxruntime's block quantizer (rtn, integer zero points), round-to-nearest with float zero points (rtn-float-zp: llama.cpp's Q4_1 scheme), or onnxruntime's HQQ solver. */
  algorithm?: Int4Algorithm;
  /** weight-only: SmoothQuant-style equalization alpha (0..1), folded into the float weights before quantizing. */
  equalize?: number;
  /** The token ids the equalization measures activation ranges on (calibration text, never the gate's corpus). */
  calibrationIds?: number[][];
}

export interface QuantizeResult {
  strategy: QuantizeStrategy;
  precision: QuantizePrecision;
  files: BridgeFile[];
  quantizedOps: Record<string, number>;
  seconds: number;
  notes: string[];
  /** Weight-only or dynamic, and the settings used (the manifest records them). */
  settings?: Record<string, string | number | boolean>;
  /** The LM head: tied, bits, accuracy level, quantized. */
  head?: { tied: boolean; bits: number; accuracyLevel: number; quantized: boolean } | null;
}

// ---- synthesize, synthetic-tokenizer --------------------------------------------------------

export interface SynthesizeRequest {
  config: Record<string, unknown>;
  /** The config's family facts (src/models/facts.ts): the bridge builds and checks the model from them. */
  architecture: ArchitectureFacts;
  generationConfig: Record<string, unknown> | null;
  seed: number;
  outDir: string;
}

export interface SynthesizeResult { files: BridgeFile[]; parameters: number; seconds: number }

export interface SyntheticTokenizerRequest {
  vocabSize: number;
  bosTokenId: number | null;
  eosTokenIds: number[];
  padTokenId: number | null;
  outDir: string;
  modelType: string;
  /** Extra special tokens, content → id. */
  specialTokens?: Record<string, number>;
  addBosToken?: boolean | null;
  modelMaxLength?: number | null;
}

export interface SyntheticTokenizerResult { files: BridgeFile[]; vocabSize: number; seconds: number }

// ---- export, optimize -----------------------------------------------------------------------

/** The parity gate's settings in export and optimize requests. */
export interface ParityRequest { promptIds?: number[]; decodeSteps?: number; atol?: number; rtol?: number }

export interface ExportRequest {
  modelDir: string;
  output: string;
  /** The folder's config's family facts (src/models/facts.ts), checked against the loaded model. */
  architecture: ArchitectureFacts;
  exporter: Exporter;
  protoLimitBytes: number;
  /** 'ort': onnxruntime's fusions, gated by the same parity check (the unfused graph when they fail); default 'none'. */
  optimize?: OptimizeMode;
  opset?: number;
  parity?: ParityRequest;
}

export interface ParityFigures {
  positions: number;
  maxAbsDiff: number;
  top1Agreement: number;
  atol: number;
  [key: string]: unknown;
}

export interface ExportResult {
  output: string;
  files: BridgeFile[];
  externalData: boolean;
  seconds: Record<string, number>;
  peakRssBytes: number;
  parameters: number;
  parity: ParityFigures;
  opset: number;
  exporter: string;
  /** Whether the graph was stamped from traced template layers (python-bridge stamp.py), or why the full trace ran instead. */
  stamp?: Record<string, unknown>;
  /** With optimize 'ort': whether the fused graph was kept, how it was made ('stamped' fused layer or 'full-graph' fusion), or why not. */
  optimize?: ExportOptimization;
}

export interface ExportOptimization {
  mode: string;
  applied: boolean;
  reason?: string;
  method: string | null;
  fusionCounts: Record<string, number>;
  nonStandardOps: string[];
  parity?: ParityFigures;
  seconds: Record<string, number>;
}

export interface OptimizeRequest {
  input: string;
  output: string;
  /** The Hugging Face folder the model was exported from: the PyTorch side of the parity gate. */
  modelDir: string;
  fusions: 'ort';
  untieLmHead?: boolean;
  protoLimitBytes: number;
  parity?: ParityRequest;
}

export interface OptimizeResult {
  fusions: string;
  /** false: fusion failed, changed the I/O or broke parity; nothing was written, `reason` says why. */
  applied: boolean;
  reason?: string;
  output?: string;
  files: BridgeFile[];
  externalData: boolean;
  fusionCounts: Record<string, number>;
  nonStandardOps: string[];
  untiedLmHead: Array<{ table: string; shape: number[]; addedBytes: number }>;
  opsBefore: Record<string, number>;
  opsAfter?: Record<string, number>;
  parity?: ParityFigures;
  seconds: Record<string, number>;
}

// ---- gguf-info, gguf-to-hf ------------------------------------------------------------------

/** What the bridge's GGUF scan reads from a file's header (`gguf-info`'s result; `gguf` in `gguf-to-hf`'s). */
export interface GgufFacts {
  file?: string;
  sha256?: string;
  bytes: number;
  version: number;
  architecture: string;
  name: string | null;
  fileType: number | null;
  fileTypeName: string | null;
  /** GGML tensor type → number of tensors of that type (e.g. {Q4_1: 210, F32: 61, Q8_0: 1}). */
  tensorTypes: Record<string, number>;
  tensorCount: number;
  parameters: number;
  bosTokenId: number | null;
  eosTokenId: number | null;
  padTokenId: number | null;
  vocabSize: number | null;
}

export interface GgufInfoRequest { gguf: string }

export interface GgufToHfRequest { gguf: string; outDir: string }

export interface GgufToHfResult {
  gguf: GgufFacts & { file: string; sha256: string };
  architectures: string[];
  modelType: string;
  parameters: number;
  files: BridgeFile[];
  seconds: Record<string, number>;
  peakRssBytes: number | null;
}

// ---- reference-generate ---------------------------------------------------------------------

export interface ReferenceGenerateRequest { modelDir: string; prompt?: string; promptIds?: number[]; maxNewTokens?: number }

export interface ReferenceGenerateResult {
  /** The ids generation started from (promptIds, or the folder's tokenizer's encoding of prompt). */
  promptIds: number[];
  /** The folder's own tokenizer's encoding of `prompt` (null when promptIds were given). */
  tokenizedPrompt: number[] | null;
  /** Greedy new tokens, up to and including the first EOS. */
  tokens: number[];
  eosTokenIds: number[];
  seconds: number;
}

// ---- the contract ------------------------------------------------------------------------------

const parityFields = fields<ParityRequest>({ promptIds: true, decodeSteps: true, atol: true, rtol: true });

/** Every command's request fields (and the fields of its object-valued ones), as the bridge must accept them. */
export const REQUEST_FIELDS: Record<string, { keys: string[]; nested: Record<string, string[]> }> = {
  versions: { keys: [], nested: {} },
  quantize: {
    keys: fields<QuantizeRequest>({
      input: true, output: true, strategy: true, precision: true, perChannel: true, protoLimitBytes: true, blockSize: true,
      int8Engine: true, int8Scheme: true, accuracyLevel: true, headAccuracyLevel: true, gatedAccuracyLevel: true, gatedBits: true,
      headBits: true, embeddingBits: true, symmetric: true, algorithm: true, equalize: true, calibrationIds: true,
    }),
    nested: {},
  },
  synthesize: { keys: fields<SynthesizeRequest>({ config: true, architecture: true, generationConfig: true, seed: true, outDir: true }), nested: {} },
  'synthetic-tokenizer': {
    keys: fields<SyntheticTokenizerRequest>({
      vocabSize: true, bosTokenId: true, eosTokenIds: true, padTokenId: true, outDir: true, modelType: true,
      specialTokens: true, addBosToken: true, modelMaxLength: true,
    }),
    nested: {},
  },
  export: {
    keys: fields<ExportRequest>({ modelDir: true, output: true, architecture: true, exporter: true, protoLimitBytes: true, optimize: true, opset: true, parity: true }),
    nested: { parity: parityFields },
  },
  optimize: {
    keys: fields<OptimizeRequest>({ input: true, output: true, modelDir: true, fusions: true, untieLmHead: true, protoLimitBytes: true, parity: true }),
    nested: { parity: parityFields },
  },
  'gguf-info': { keys: fields<GgufInfoRequest>({ gguf: true }), nested: {} },
  'gguf-to-hf': { keys: fields<GgufToHfRequest>({ gguf: true, outDir: true }), nested: {} },
  'reference-generate': { keys: fields<ReferenceGenerateRequest>({ modelDir: true, prompt: true, promptIds: true, maxNewTokens: true }), nested: {} },
};
