import { type ExternalDataReport, checkExternalData } from './external-data.js';
import { opHistogram, walkNodes } from './graph-walk.js';
import { type InitializerStats, initializerStats } from './initializers.js';
import { type KvCacheInfo, detectKvCache } from './kv-cache.js';
import { type OnnxModel, readModel } from './model.js';
import { type QuantizationInfo, detectQuantization } from './quantization.js';
import { type ValueSummary, summarizeValue } from './value-types.js';

/** Everything `sphana inspect` reports about one model; the JSON form is a stable contract. */
export interface ModelSummary {
  path: string;
  fileBytes: number;
  irVersion: number | null;
  opsets: Record<string, number>;
  producer: { name: string; version: string };
  domain: string;
  modelVersion: number | null;
  graphName: string;
  metadata: Record<string, string>;
  inputs: ValueSummary[];
  outputs: ValueSummary[];
  nodeCount: number;
  ops: Record<string, number>;
  functions: Array<{ name: string; nodeCount: number }>;
  initializers: InitializerStats;
  externalData: string[];
  externalDataFiles: ExternalDataReport['files'];
  unknownExternalDataKeys: ExternalDataReport['unknownKeys'];
  kvCache: KvCacheInfo | null;
  quantization: QuantizationInfo;
  unknownFields: number;
  /** Problems that make the model unusable as is (external data missing, short or unsafe). */
  problems: Array<{ code: string; message: string }>;
}

export function inspectFile(path: string): ModelSummary {
  return summarize(readModel(path));
}

export function summarize(model: OnnxModel): ModelSummary {
  const proto = model.proto;
  const graph = proto.graph ?? {};
  const initializerNames = new Set<string>([
    ...(graph.initializer ?? []).map((t) => t.name ?? ''),
    ...(graph.sparse_initializer ?? []).map((s) => s.values?.name ?? ''),
  ]);
  const opsets: Record<string, number> = {};
  for (const o of proto.opset_import ?? []) {
    const domain = o.domain === 'ai.onnx' ? '' : o.domain ?? '';
    opsets[domain] = Number(o.version ?? 0);
  }
  const metadata: Record<string, string> = {};
  for (const e of proto.metadata_props ?? []) metadata[e.key ?? ''] = e.value ?? '';
  const { count, ops } = opHistogram(walkNodes(graph));
  const initializers = initializerStats(graph);
  const external = checkExternalData(proto, model.baseDir);
  const parametersByType = Object.fromEntries(Object.entries(initializers.byType).map(([k, v]) => [k, v.parameters]));
  const problems = external.files
    .filter((f) => f.status !== 'ok')
    .map((f) => ({ code: EXTERNAL_CODES[f.status], message: f.reason ?? f.status }));
  return {
    path: model.path,
    fileBytes: model.fileBytes,
    irVersion: proto.ir_version === undefined ? null : Number(proto.ir_version),
    opsets,
    producer: { name: proto.producer_name ?? '', version: proto.producer_version ?? '' },
    domain: proto.domain ?? '',
    modelVersion: proto.model_version === undefined ? null : Number(proto.model_version),
    graphName: graph.name ?? '',
    metadata,
    inputs: (graph.input ?? []).filter((v) => !initializerNames.has(v.name ?? '')).map(summarizeValue),
    outputs: (graph.output ?? []).map(summarizeValue),
    nodeCount: count,
    ops,
    functions: (proto.functions ?? []).map((f) => ({ name: `${f.domain ?? ''}.${f.name ?? ''}`, nodeCount: (f.node ?? []).length })),
    initializers,
    externalData: external.locations,
    externalDataFiles: external.files,
    unknownExternalDataKeys: external.unknownKeys,
    kvCache: detectKvCache(proto, initializerNames),
    quantization: detectQuantization(proto, parametersByType),
    unknownFields: countUnknown(proto),
    problems,
  };
}

const EXTERNAL_CODES = {
  ok: 'OK',
  missing: 'E_EXTERNAL_DATA_MISSING',
  short: 'E_EXTERNAL_DATA_SHORT',
  unsafe: 'E_UNSAFE_EXTERNAL_DATA',
  invalid: 'E_EXTERNAL_DATA_INVALID',
} as const;

/** Unknown protobuf fields anywhere in the decoded tree (reported, never an error). */
function countUnknown(value: unknown, depth = 0): number {
  if (typeof value !== 'object' || value === null || depth > 200 || Buffer.isBuffer(value)) return 0;
  if (Array.isArray(value)) return value.reduce((n: number, v) => n + countUnknown(v, depth + 1), 0);
  let n = 0;
  for (const [k, v] of Object.entries(value)) {
    if (k === '$unknownFields') n += v as number;
    else if (typeof v === 'object') n += countUnknown(v, depth + 1);
  }
  return n;
}

/** JSON with exact integers: bigints are written as plain digits. */
export function toJsonLine(value: unknown): string {
  const marks: string[] = [];
  const text = JSON.stringify(value, (_k, v) => {
    if (typeof v === 'bigint') {
      marks.push(v.toString());
      return `\u0000big${marks.length - 1}\u0000`;
    }
    return v;
  });
  return text.replace(/"\\u0000big(\d+)\\u0000"/g, (_m, i) => marks[Number(i)]);
}
