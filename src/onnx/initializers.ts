import { STRING_TYPE, elementTypeName, packedBytes } from './element-types.js';
import type { GraphProto, SparseTensorProto, TensorProto } from './proto-types.js';

/** Parameter and byte counts of a graph's initializers (exact as bigint; numbers when safe). */
export interface InitializerStats {
  count: number;
  parameters: number | bigint;
  bytes: number | bigint;
  byType: Record<string, { count: number; parameters: number | bigint; bytes: number | bigint }>;
}

/** Product of dims (1 for a scalar); negative dims count as 0. */
export function elementCount(dims: Array<number | bigint> | undefined): bigint {
  let count = 1n;
  for (const d of dims ?? []) {
    const v = BigInt(d);
    count *= v > 0n ? v : 0n;
  }
  return count;
}

/** Bytes the tensor's elements take: packed for fixed-size types, the sum of lengths for strings. */
export function tensorBytes(tensor: TensorProto | undefined): bigint {
  if (!tensor) return 0n;
  if (tensor.data_type === STRING_TYPE) return BigInt(tensor.string_data?.payloadBytes ?? 0);
  return packedBytes(tensor.data_type, elementCount(tensor.dims));
}

export function sparseBytes(sparse: SparseTensorProto): bigint {
  return tensorBytes(sparse.values) + tensorBytes(sparse.indices);
}

export function initializerStats(graph: GraphProto | undefined): InitializerStats {
  const byType = new Map<string, { count: number; parameters: bigint; bytes: bigint }>();
  let count = 0;
  let parameters = 0n;
  let bytes = 0n;
  const add = (type: string, n: bigint, b: bigint) => {
    const row = byType.get(type) ?? { count: 0, parameters: 0n, bytes: 0n };
    row.count += 1;
    row.parameters += n;
    row.bytes += b;
    byType.set(type, row);
    count += 1;
    parameters += n;
    bytes += b;
  };
  for (const tensor of graph?.initializer ?? []) {
    add(elementTypeName(tensor.data_type), elementCount(tensor.dims), tensorBytes(tensor));
  }
  for (const sparse of graph?.sparse_initializer ?? []) {
    add(elementTypeName(sparse.values?.data_type), elementCount(sparse.dims), sparseBytes(sparse));
  }
  const sorted = [...byType.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return {
    count,
    parameters: exact(parameters),
    bytes: exact(bytes),
    byType: Object.fromEntries(sorted.map(([k, v]) => [k, { count: v.count, parameters: exact(v.parameters), bytes: exact(v.bytes) }])),
  };
}

export function exact(value: bigint): number | bigint {
  return value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;
}
