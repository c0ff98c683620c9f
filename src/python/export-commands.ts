/** Typed entry points of the bridge's export side: synthesize, synthetic-tokenizer, export, gguf-to-hf, reference-generate. */
import type { ArchitectureFacts } from '../models/facts.js';
import type { BridgeEnvironment } from './environment.js';
import { type BridgeCallOptions, callBridge } from './bridge.js';

type Options = Omit<BridgeCallOptions, 'env'>;
export interface BridgeFile { path: string; bytes: number }

function object(value: unknown, what: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error(`${what} is not an object`);
  return value as Record<string, unknown>;
}

function files(value: unknown): BridgeFile[] {
  if (!Array.isArray(value)) throw new Error('files is not an array');
  return value.map((f, i) => {
    const o = object(f, `files[${i}]`);
    if (typeof o.path !== 'string' || typeof o.bytes !== 'number') throw new Error(`files[${i}] is not {path, bytes}`);
    return { path: o.path, bytes: o.bytes };
  });
}

function num(value: unknown, what: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) throw new Error(`${what} is not a number`);
  return value;
}

export interface SynthesizeRequest {
  config: Record<string, unknown>;
  /** The config's family facts (src/models/facts.ts): the bridge builds and checks the model from them. */
  architecture: ArchitectureFacts;
  generationConfig: Record<string, unknown> | null;
  seed: number;
  outDir: string;
}
export interface SynthesizeResult { files: BridgeFile[]; parameters: number; seconds: number }

export function bridgeSynthesize(env: BridgeEnvironment, request: SynthesizeRequest, options: Options = {}): Promise<SynthesizeResult> {
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
}
export interface SyntheticTokenizerResult { files: BridgeFile[]; vocabSize: number; seconds: number }

export function bridgeSyntheticTokenizer(env: BridgeEnvironment, request: SyntheticTokenizerRequest, options: Options = {}): Promise<SyntheticTokenizerResult> {
  return callBridge('synthetic-tokenizer', request, {
    ...options, env,
    parse: (data) => {
      const o = object(data, 'result');
      return { files: files(o.files), vocabSize: num(o.vocabSize, 'vocabSize'), seconds: num(o.seconds, 'seconds') };
    },
  });
}

export interface ExportRequest {
  modelDir: string;
  output: string;
  /** The folder's config's family facts (src/models/facts.ts), checked against the loaded model. */
  architecture: ArchitectureFacts;
  exporter: 'dynamo' | 'torchscript';
  protoLimitBytes: number;
  opset?: number;
  parity?: { promptIds?: number[]; decodeSteps?: number; atol?: number };
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
}

export function bridgeExport(env: BridgeEnvironment, request: ExportRequest, options: Options = {}): Promise<ExportResult> {
  return callBridge('export', request, {
    ...options, env,
    parse: (data) => {
      const o = object(data, 'result');
      const parity = object(o.parity, 'parity');
      num(parity.maxAbsDiff, 'parity.maxAbsDiff');
      num(parity.top1Agreement, 'parity.top1Agreement');
      if (typeof o.output !== 'string' || typeof o.exporter !== 'string') throw new Error('output/exporter are not strings');
      return {
        output: o.output, files: files(o.files), externalData: !!o.externalData,
        seconds: object(o.seconds, 'seconds') as Record<string, number>, peakRssBytes: num(o.peakRssBytes, 'peakRssBytes'),
        parameters: num(o.parameters, 'parameters'), parity: parity as ParityFigures, opset: num(o.opset, 'opset'), exporter: o.exporter,
      };
    },
  });
}

/** What the bridge's GGUF scan reads from a file's header (`gguf` in `gguf-to-hf`'s result; `gguf-info` returns the same). */
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

const intOrNull = (value: unknown, what: string): number | null => (value === null || value === undefined ? null : num(value, what));
const str = (value: unknown, what: string): string => {
  if (typeof value !== 'string') throw new Error(`${what} is not a string`);
  return value;
};

function parseGgufFacts(value: unknown): GgufFacts {
  const o = object(value, 'gguf');
  const types = object(o.tensorTypes, 'gguf.tensorTypes');
  return {
    ...(typeof o.file === 'string' ? { file: o.file } : {}),
    ...(typeof o.sha256 === 'string' ? { sha256: o.sha256 } : {}),
    bytes: num(o.bytes, 'gguf.bytes'), version: num(o.version, 'gguf.version'), architecture: str(o.architecture, 'gguf.architecture'),
    name: typeof o.name === 'string' ? o.name : null, fileType: intOrNull(o.fileType, 'gguf.fileType'),
    fileTypeName: typeof o.fileTypeName === 'string' ? o.fileTypeName : null,
    tensorTypes: Object.fromEntries(Object.entries(types).map(([k, v]) => [k, num(v, `gguf.tensorTypes.${k}`)])),
    tensorCount: num(o.tensorCount, 'gguf.tensorCount'), parameters: num(o.parameters, 'gguf.parameters'),
    bosTokenId: intOrNull(o.bosTokenId, 'gguf.bosTokenId'), eosTokenId: intOrNull(o.eosTokenId, 'gguf.eosTokenId'),
    padTokenId: intOrNull(o.padTokenId, 'gguf.padTokenId'), vocabSize: intOrNull(o.vocabSize, 'gguf.vocabSize'),
  };
}

/** `gguf-to-hf`: scan, then dequantize to an fp32 Hugging Face folder in `outDir` (an existing empty folder). */
export function bridgeGgufToHf(env: BridgeEnvironment, request: GgufToHfRequest, options: Options = {}): Promise<GgufToHfResult> {
  return callBridge('gguf-to-hf', request, {
    ...options, env,
    parse: (data) => {
      const o = object(data, 'result');
      const gguf = parseGgufFacts(o.gguf);
      if (!gguf.file || !gguf.sha256) throw new Error('gguf.file / gguf.sha256 missing');
      if (!Array.isArray(o.architectures) || !o.architectures.every((a) => typeof a === 'string')) throw new Error('architectures is not a list of strings');
      return {
        gguf: gguf as GgufToHfResult['gguf'], architectures: o.architectures as string[], modelType: str(o.modelType, 'modelType'),
        parameters: num(o.parameters, 'parameters'), files: files(o.files),
        seconds: object(o.seconds, 'seconds') as Record<string, number>, peakRssBytes: intOrNull(o.peakRssBytes, 'peakRssBytes'),
      };
    },
  });
}

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

const ids = (value: unknown, what: string): number[] => {
  if (!Array.isArray(value)) throw new Error(`${what} is not an array`);
  return value.map((v, i) => num(v, `${what}[${i}]`));
};

/** `reference-generate`: transformers' greedy `generate` on a Hugging Face folder (fp32, eager attention). */
export function bridgeReferenceGenerate(env: BridgeEnvironment, request: ReferenceGenerateRequest, options: Options = {}): Promise<ReferenceGenerateResult> {
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

export interface OptimizeRequest {
  input: string;
  output: string;
  /** The Hugging Face folder the model was exported from: the PyTorch side of the parity gate. */
  modelDir: string;
  fusions: 'ort';
  untieLmHead?: boolean;
  protoLimitBytes: number;
  parity?: { promptIds?: number[]; decodeSteps?: number; atol?: number };
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

export function bridgeOptimize(env: BridgeEnvironment, request: OptimizeRequest, options: Options = {}): Promise<OptimizeResult> {
  return callBridge('optimize', request, {
    ...options, env,
    parse: (data) => {
      const o = object(data, 'result');
      if (typeof o.applied !== 'boolean') throw new Error('applied is not a boolean');
      if (o.applied) num(object(o.parity, 'parity').maxAbsDiff, 'parity.maxAbsDiff');
      else if (typeof o.reason !== 'string') throw new Error('a result that was not applied needs a reason');
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
