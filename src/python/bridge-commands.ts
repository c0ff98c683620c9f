/** Typed entry points of the bridge: one request type, one result type and one reply parser per command. */
import type { BridgeEnvironment } from './environment.js';
import { type BridgeCallOptions, callBridge } from './bridge.js';

export interface BridgeVersions {
  python: string;
  packages: Record<string, string>;
}

export type QuantizeStrategy = 'direct' | 'external-data' | 'embedding-split';
export type QuantizePrecision = 'int8' | 'int4';

export interface QuantizeRequest {
  input: string;
  output: string;
  strategy: QuantizeStrategy;
  precision: QuantizePrecision;
  perChannel: boolean;
  protoLimitBytes: number;
  blockSize?: number;
  /** int8 dynamic scheme, direct/external-data: onnxruntime's quantize_dynamic, or the bridge's tensor-by-tensor engine (same bytes, ~0.4× memory). */
  int8Engine?: 'ort' | 'streaming';
  /** int8: weight-only MatMulNBits blocks (default) or DynamicQuantizeLinear + MatMulInteger. */
  int8Scheme?: Int8Scheme;
  /** MatMulNBits accuracy_level (weight-only): 4 = int8 activations (fast), 0 = float activations. */
  accuracyLevel?: number;
  /** The LM head's accuracy_level when it differs (kept at higher precision). */
  headAccuracyLevel?: number;
  /** The accuracy_level of the MatMuls fed by a product of two activations (a gated MLP's down projections). */
  gatedAccuracyLevel?: number;
  /** int4: bits of an untied LM head (8 = mixed precision). */
  headBits?: 8 | 4;
  /** weight-only: bits of the token embedding (and of a tied head, which shares its table). */
  embeddingBits?: 8 | 4;
  /** int4: symmetric blocks (no zero points) instead of asymmetric. */
  symmetric?: boolean;
  /** int4: onnxruntime's block quantizer (rtn) or its HQQ solver. */
  algorithm?: 'rtn' | 'hqq';
}

export type Int8Scheme = 'weight-only' | 'dynamic';

export interface QuantizeResult {
  strategy: QuantizeStrategy;
  precision: QuantizePrecision;
  files: Array<{ path: string; bytes: number }>;
  quantizedOps: Record<string, number>;
  seconds: number;
  notes: string[];
  /** Weight-only or dynamic, and the settings used (the manifest records them). */
  settings?: Record<string, string | number | boolean>;
  /** The LM head: graph outputs it produces, tied, bits, accuracy level, quantized. */
  head?: { tied: boolean; bits: number; accuracyLevel: number; quantized: boolean } | null;
}

export type BridgeCommandOptions = Omit<BridgeCallOptions, 'env'>;

/** Thrown by the parsers; callBridge turns it into E_BRIDGE_PROTOCOL naming the command, request and output. */
class ShapeError extends Error {}

function object(value: unknown, what: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new ShapeError(`${what} is not an object`);
  return value as Record<string, unknown>;
}

function string(value: unknown, what: string): string {
  if (typeof value !== 'string') throw new ShapeError(`${what} is not a string`);
  return value;
}

function number(value: unknown, what: string, integer = false): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || (integer && !Number.isInteger(value))) {
    throw new ShapeError(`${what} is not a non-negative ${integer ? 'integer' : 'number'}`);
  }
  return value;
}

function oneOf<T extends string>(value: unknown, allowed: readonly T[], what: string): T {
  if (!allowed.includes(value as T)) throw new ShapeError(`${what} is not one of ${allowed.join(', ')}`);
  return value as T;
}

function record<T>(value: unknown, what: string, each: (v: unknown, what: string) => T): Record<string, T> {
  const o = object(value, what);
  return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, each(v, `${what}.${k}`)]));
}

export function parseVersions(data: unknown): BridgeVersions {
  const o = object(data, 'result');
  return { python: string(o.python, 'python'), packages: record(o.packages, 'packages', string) };
}

export function parseQuantize(data: unknown): QuantizeResult {
  const o = object(data, 'result');
  if (!Array.isArray(o.files)) throw new ShapeError('files is not an array');
  if (!Array.isArray(o.notes)) throw new ShapeError('notes is not an array');
  return {
    strategy: oneOf(o.strategy, ['direct', 'external-data', 'embedding-split'] as const, 'strategy'),
    precision: oneOf(o.precision, ['int8', 'int4'] as const, 'precision'),
    files: o.files.map((f, i) => {
      const file = object(f, `files[${i}]`);
      return { path: string(file.path, `files[${i}].path`), bytes: number(file.bytes, `files[${i}].bytes`, true) };
    }),
    quantizedOps: record(o.quantizedOps, 'quantizedOps', (v, what) => number(v, what, true)),
    seconds: number(o.seconds, 'seconds'),
    notes: o.notes.map((n, i) => string(n, `notes[${i}]`)),
    ...(o.settings === undefined ? {} : {
      settings: record(o.settings, 'settings', (v, what) => {
        if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') throw new ShapeError(`${what} is not a scalar`);
        return v;
      }),
    }),
    ...(o.head === undefined || o.head === null ? {} : (() => {
      const h = object(o.head, 'head');
      return { head: { tied: h.tied === true, bits: number(h.bits, 'head.bits', true), accuracyLevel: number(h.accuracyLevel, 'head.accuracyLevel', true), quantized: h.quantized === true } };
    })()),
  };
}

/** `versions`: the bridge's Python version and the versions of its packages. */
export function bridgeVersions(env: BridgeEnvironment, options: BridgeCommandOptions = {}): Promise<BridgeVersions> {
  return callBridge('versions', {}, { timeoutMs: 120_000, ...options, env, parse: parseVersions });
}

/** `quantize`: dynamic quantization of one ONNX model with the given strategy. */
export function bridgeQuantize(env: BridgeEnvironment, request: QuantizeRequest, options: BridgeCommandOptions = {}): Promise<QuantizeResult> {
  return callBridge('quantize', request, { ...options, env, parse: parseQuantize });
}
