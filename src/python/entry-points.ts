/**
 * The bridge's entry points (python-bridge/sphana_bridge/cli.py COMMANDS), one typed function
 * each with its reply parser. Their request and result types, and the field lists the contract
 * test compares with what the bridge accepts, are in ./bridge-requests.ts.
 */
import type { BridgeEnvironment } from './environment.js';
import { type BridgeCallOptions, callBridge } from './bridge.js';
import type {
  BridgeVersions, ExportOptimization, ExportRequest, ExportResult, GgufFacts, GgufInfoRequest, GgufToHfRequest, GgufToHfResult, OptimizeRequest,
  OptimizeResult, ParityFigures, QuantizeRequest, QuantizeResult, ReferenceGenerateRequest, ReferenceGenerateResult,
  SynthesizeRequest, SynthesizeResult, SyntheticTokenizerRequest, SyntheticTokenizerResult,
} from './bridge-requests.js';
import { ShapeError, count, files, ids, num, numOrNull, object, oneOf, record, string } from './reply-shape.js';
import { QUANT_PRECISIONS, STRATEGIES } from '../vocabulary.js';

export type * from './bridge-requests.js';
export type { BridgeFile } from './reply-shape.js';
export type BridgeCommandOptions = Omit<BridgeCallOptions, 'env'>;

// ---- versions ----------------------------------------------------------------------------------

export function parseVersions(data: unknown): BridgeVersions {
  const o = object(data, 'result');
  return { python: string(o.python, 'python'), packages: record(o.packages, 'packages', string) };
}

/** `versions`: the bridge's Python version and the versions of its packages. */
export function bridgeVersions(env: BridgeEnvironment, options: BridgeCommandOptions = {}): Promise<BridgeVersions> {
  return callBridge('versions', {}, { timeoutMs: 120_000, ...options, env, parse: parseVersions });
}

// ---- quantize ----------------------------------------------------------------------------------

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
        ...(o.optimize === undefined ? {} : { optimize: exportOptimization(object(o.optimize, 'optimize')) }),
      };
    },
  });
}

function exportOptimization(o: Record<string, unknown>): ExportOptimization {
  if (typeof o.applied !== 'boolean') throw new ShapeError('optimize.applied is not a boolean');
  if (o.applied) num(object(o.parity, 'optimize.parity').maxAbsDiff, 'optimize.parity.maxAbsDiff');
  else if (typeof o.reason !== 'string') throw new ShapeError('an optimization that was not applied needs a reason');
  return {
    mode: String(o.mode), applied: o.applied, reason: typeof o.reason === 'string' ? o.reason : undefined,
    method: typeof o.method === 'string' ? o.method : null,
    fusionCounts: (o.fusionCounts ?? {}) as Record<string, number>,
    nonStandardOps: Array.isArray(o.nonStandardOps) ? o.nonStandardOps.map(String) : [],
    parity: o.parity === undefined ? undefined : object(o.parity, 'optimize.parity') as ParityFigures,
    seconds: (o.seconds ?? {}) as Record<string, number>,
  };
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

/** `gguf-info`: the header scan alone (no torch). */
export function bridgeGgufInfo(env: BridgeEnvironment, request: GgufInfoRequest, options: BridgeCommandOptions = {}): Promise<GgufFacts> {
  return callBridge('gguf-info', request, { ...options, env, parse: parseGgufFacts });
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
