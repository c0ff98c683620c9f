/** Typed entry points of the bridge's export side: synthesize, synthetic-tokenizer, export. */
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
