/**
 * The bridge's entry points (python-bridge/sphana_bridge/cli.py COMMANDS), one typed function
 * each: its request type, the list of the request's fields, its result type and its reply parser.
 * test/python/bridge-contract.test.ts compares every field list with what the bridge accepts.
 */
import type { ArchitectureFacts } from '../models/facts.js';
import type { BridgeEnvironment } from './environment.js';
import { type BridgeCallOptions, callBridge } from './bridge.js';
import { type BridgeFile, ShapeError, count, files, ids, num, numOrNull, object, oneOf, record, string } from './reply-shape.js';
import {
  type Exporter, type Int4Algorithm, type Int8Engine, type Int8Scheme, type QuantizePrecision, type QuantizeStrategy, type TableBits,
  QUANT_PRECISIONS, STRATEGIES,
} from '../vocabulary.js';

export type { BridgeFile } from './reply-shape.js';
export type BridgeCommandOptions = Omit<BridgeCallOptions, 'env'>;

/** Every field of a request type, once: the compiler rejects a missing or an extra one. */
export const fields = <T>(all: { [K in keyof Required<T>]: true }): string[] => Object.keys(all).sort();

// ---- versions ----------------------------------------------------------------------------------

export interface BridgeVersions { python: string; packages: Record<string, string> }

export function parseVersions(data: unknown): BridgeVersions {
  const o = object(data, 'result');
  return { python: string(o.python, 'python'), packages: record(o.packages, 'packages', string) };
}

/** `versions`: the bridge's Python version and the versions of its packages. */
export function bridgeVersions(env: BridgeEnvironment, options: BridgeCommandOptions = {}): Promise<BridgeVersions> {
  return callBridge('versions', {}, { timeoutMs: 120_000, ...options, env, parse: parseVersions });
}

// ---- quantize ----------------------------------------------------------------------------------

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
  /** int4: onnxruntime's block quantizer (rtn) or its HQQ solver. */
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

export function parseQuantize(data: unknown): QuantizeResult {
  const o = object(data, 'result');
  if (!Array.isArray(o.files)) throw new ShapeError('files is not an array');
  if (!Array.isArray(o.notes)) throw new ShapeError('notes is not an array');
  return {
    strategy: oneOf(o.strategy, STRATEGIES, 'strategy'),
    precision: oneOf(o.precision, QUANT_PRECISIONS, 'precision'),
    files: o.files.map((f, i) => {
      const file = object(f, `files[${i}]`);
      return { path: string(file.path, `files[${i}].path`), bytes: count(file.bytes, `files[${i}].bytes`, true) };
    }),
    quantizedOps: record(o.quantizedOps, 'quantizedOps', (v, what) => count(v, what, true)),
    seconds: count(o.seconds, 'seconds'),
    notes: o.notes.map((n, i) => string(n, `notes[${i}]`)),
    ...(o.settings === undefined ? {} : {
      settings: record(o.settings, 'settings', (v, what) => {
        if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') throw new ShapeError(`${what} is not a scalar`);
        return v;
      }),
    }),
    ...(o.head === undefined || o.head === null ? {} : (() => {
      const h = object(o.head, 'head');
      return { head: { tied: h.tied === true, bits: count(h.bits, 'head.bits', true), accuracyLevel: count(h.accuracyLevel, 'head.accuracyLevel', true), quantized: h.quantized === true } };
    })()),
  };
}

/** `quantize`: one ONNX model, one strategy, one precision. */
export function bridgeQuantize(env: BridgeEnvironment, request: QuantizeRequest, options: BridgeCommandOptions = {}): Promise<QuantizeResult> {
  return callBridge('quantize', request, { ...options, env, parse: parseQuantize });
}

// ---- synthesize, synthetic-tokenizer -----------------------------------------------------------

export interface SynthesizeRequest {
  config: Record<string, unknown>;
  /** The config's family facts (src/models/facts.ts): the bridge builds and checks the model from them. */
  architecture: ArchitectureFacts;
  generationConfig: Record<string, unknown> | null;
  seed: number;
  outDir: string;
}
export interface SynthesizeResult { files: BridgeFile[]; parameters: number; seconds: number }

/** `synthesize`: random weights for a config, written as a Hugging Face folder. */
export function bridgeSynthesize(env: BridgeEnvironment, request: SynthesizeRequest, options: BridgeCommandOptions = {}): Promise<SynthesizeResult> {
  return callBridge('synthesize', request, {
    ...options, env,
    parse: (data) => {
      const o = object(data, 'result');
      return { files: files(o.files), parameters: num(o.parameters, 'parameters'), seconds: num(o.seconds, 'seconds') };
    },
  });
}

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

/** `synthetic-tokenizer`: a byte-level tokenizer covering a vocabulary, for synthetic weights. */
export function bridgeSyntheticTokenizer(env: BridgeEnvironment, request: SyntheticTokenizerRequest, options: BridgeCommandOptions = {}): Promise<SyntheticTokenizerResult> {
  return callBridge('synthetic-tokenizer', request, {
    ...options, env,
    parse: (data) => {
      const o = object(data, 'result');
      return { files: files(o.files), vocabSize: num(o.vocabSize, 'vocabSize'), seconds: num(o.seconds, 'seconds') };
    },
  });
}

// ---- export, optimize --------------------------------------------------------------------------

/** The parity gate's settings in export and optimize requests. */
export interface ParityRequest { promptIds?: number[]; decodeSteps?: number; atol?: number; rtol?: number }

export interface ExportRequest {
  modelDir: string;
  output: string;
  /** The folder's config's family facts (src/models/facts.ts), checked against the loaded model. */
  architecture: ArchitectureFacts;
  exporter: Exporter;
  protoLimitBytes: number;
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
}

/** `export`: a Hugging Face folder → ONNX with KV cache, parity-gated against PyTorch. */
export function bridgeExport(env: BridgeEnvironment, request: ExportRequest, options: BridgeCommandOptions = {}): Promise<ExportResult> {
  return callBridge('export', request, {
    ...options, env,
    parse: (data) => {
      const o = object(data, 'result');
      const parity = object(o.parity, 'parity');
      num(parity.maxAbsDiff, 'parity.maxAbsDiff');
      num(parity.top1Agreement, 'parity.top1Agreement');
      if (typeof o.output !== 'string' || typeof o.exporter !== 'string') throw new ShapeError('output/exporter are not strings');
      return {
        output: o.output, files: files(o.files), externalData: !!o.externalData,
        seconds: object(o.seconds, 'seconds') as Record<string, number>, peakRssBytes: num(o.peakRssBytes, 'peakRssBytes'),
        parameters: num(o.parameters, 'parameters'), parity: parity as ParityFigures, opset: num(o.opset, 'opset'), exporter: o.exporter,
        ...(o.stamp === undefined ? {} : { stamp: object(o.stamp, 'stamp') }),
      };
    },
  });
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

/** `optimize`: onnxruntime's transformer fusions, parity-gated; a fusion that breaks parity is not applied. */
export function bridgeOptimize(env: BridgeEnvironment, request: OptimizeRequest, options: BridgeCommandOptions = {}): Promise<OptimizeResult> {
  return callBridge('optimize', request, {
    ...options, env,
    parse: (data) => {
      const o = object(data, 'result');
      if (typeof o.applied !== 'boolean') throw new ShapeError('applied is not a boolean');
      if (o.applied) num(object(o.parity, 'parity').maxAbsDiff, 'parity.maxAbsDiff');
      else if (typeof o.reason !== 'string') throw new ShapeError('a result that was not applied needs a reason');
      return {
        fusions: String(o.fusions), applied: o.applied, reason: typeof o.reason === 'string' ? o.reason : undefined,
        output: typeof o.output === 'string' ? o.output : undefined, files: o.files === undefined ? [] : files(o.files),
        externalData: !!o.externalData, fusionCounts: (o.fusionCounts ?? {}) as Record<string, number>,
        nonStandardOps: Array.isArray(o.nonStandardOps) ? o.nonStandardOps.map(String) : [],
        untiedLmHead: (Array.isArray(o.untiedLmHead) ? o.untiedLmHead : []) as OptimizeResult['untiedLmHead'],
        opsBefore: object(o.opsBefore, 'opsBefore') as Record<string, number>,
        opsAfter: o.opsAfter === undefined ? undefined : object(o.opsAfter, 'opsAfter') as Record<string, number>,
        parity: o.parity === undefined ? undefined : object(o.parity, 'parity') as ParityFigures,
        seconds: object(o.seconds, 'seconds') as Record<string, number>,
      };
    },
  });
}

// ---- gguf-info, gguf-to-hf ---------------------------------------------------------------------

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

export function parseGgufFacts(value: unknown): GgufFacts {
  const o = object(value, 'gguf');
  return {
    ...(typeof o.file === 'string' ? { file: o.file } : {}),
    ...(typeof o.sha256 === 'string' ? { sha256: o.sha256 } : {}),
    bytes: num(o.bytes, 'gguf.bytes'), version: num(o.version, 'gguf.version'), architecture: string(o.architecture, 'gguf.architecture'),
    name: typeof o.name === 'string' ? o.name : null, fileType: numOrNull(o.fileType, 'gguf.fileType'),
    fileTypeName: typeof o.fileTypeName === 'string' ? o.fileTypeName : null,
    tensorTypes: record(o.tensorTypes, 'gguf.tensorTypes', num),
    tensorCount: num(o.tensorCount, 'gguf.tensorCount'), parameters: num(o.parameters, 'gguf.parameters'),
    bosTokenId: numOrNull(o.bosTokenId, 'gguf.bosTokenId'), eosTokenId: numOrNull(o.eosTokenId, 'gguf.eosTokenId'),
    padTokenId: numOrNull(o.padTokenId, 'gguf.padTokenId'), vocabSize: numOrNull(o.vocabSize, 'gguf.vocabSize'),
  };
}

export interface GgufInfoRequest { gguf: string }

/** `gguf-info`: the header scan alone (no torch). */
export function bridgeGgufInfo(env: BridgeEnvironment, request: GgufInfoRequest, options: BridgeCommandOptions = {}): Promise<GgufFacts> {
  return callBridge('gguf-info', request, { ...options, env, parse: parseGgufFacts });
}

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

/** `gguf-to-hf`: scan, then dequantize to an fp32 Hugging Face folder in `outDir` (an existing empty folder). */
export function bridgeGgufToHf(env: BridgeEnvironment, request: GgufToHfRequest, options: BridgeCommandOptions = {}): Promise<GgufToHfResult> {
  return callBridge('gguf-to-hf', request, {
    ...options, env,
    parse: (data) => {
      const o = object(data, 'result');
      const gguf = parseGgufFacts(o.gguf);
      if (!gguf.file || !gguf.sha256) throw new ShapeError('gguf.file / gguf.sha256 missing');
      if (!Array.isArray(o.architectures) || !o.architectures.every((a) => typeof a === 'string')) throw new ShapeError('architectures is not a list of strings');
      return {
        gguf: gguf as GgufToHfResult['gguf'], architectures: o.architectures as string[], modelType: string(o.modelType, 'modelType'),
        parameters: num(o.parameters, 'parameters'), files: files(o.files),
        seconds: object(o.seconds, 'seconds') as Record<string, number>, peakRssBytes: numOrNull(o.peakRssBytes, 'peakRssBytes'),
      };
    },
  });
}

// ---- reference-generate ------------------------------------------------------------------------

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

/** `reference-generate`: transformers' greedy `generate` on a Hugging Face folder (fp32, eager attention). */
export function bridgeReferenceGenerate(env: BridgeEnvironment, request: ReferenceGenerateRequest, options: BridgeCommandOptions = {}): Promise<ReferenceGenerateResult> {
  return callBridge('reference-generate', request, {
    ...options, env,
    parse: (data) => {
      const o = object(data, 'result');
      return {
        promptIds: ids(o.promptIds, 'promptIds'), tokenizedPrompt: o.tokenizedPrompt === null ? null : ids(o.tokenizedPrompt, 'tokenizedPrompt'),
        tokens: ids(o.tokens, 'tokens'), eosTokenIds: ids(o.eosTokenIds, 'eosTokenIds'), seconds: num(o.seconds, 'seconds'),
      };
    },
  });
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
    keys: fields<ExportRequest>({ modelDir: true, output: true, architecture: true, exporter: true, protoLimitBytes: true, opset: true, parity: true }),
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
