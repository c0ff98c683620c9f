import { elementTypeName } from './element-types.js';
import type { TensorShape, TypeProto, ValueInfo } from './proto-types.js';

/** A graph input or output as sphana reports it. */
export interface ValueSummary {
  name: string;
  /** `float32`, `sequence<float32>`, `map<int64,float32>`, `optional<T>`, `sparse<T>`, or null when untyped. */
  type: string | null;
  /** Integers for fixed dims, strings for symbolic ones, null for unknown; null when no shape. */
  shape: Array<number | string | null> | null;
}

export function describeType(type: TypeProto | undefined): string | null {
  if (!type) return null;
  if (type.tensor_type) return elementTypeName(type.tensor_type.elem_type);
  if (type.sequence_type) return `sequence<${describeType(type.sequence_type.elem_type) ?? 'undefined'}>`;
  if (type.map_type) return `map<${elementTypeName(type.map_type.key_type)},${describeType(type.map_type.value_type) ?? 'undefined'}>`;
  if (type.optional_type) return `optional<${describeType(type.optional_type.elem_type) ?? 'undefined'}>`;
  if (type.sparse_tensor_type) return `sparse<${elementTypeName(type.sparse_tensor_type.elem_type)}>`;
  if (type.opaque_type) {
    const { domain, name } = type.opaque_type;
    return `opaque<${domain ? `${domain}.` : ''}${name ?? ''}>`;
  }
  return null;
}

export function describeShape(type: TypeProto | undefined): ValueSummary['shape'] {
  const shape: TensorShape | undefined = type?.tensor_type?.shape ?? type?.sparse_tensor_type?.shape;
  if (!shape) return null;
  return (shape.dim ?? []).map((d) => {
    if (d.dim_value !== undefined) return Number(d.dim_value);
    if (d.dim_param !== undefined) return d.dim_param;
    return null;
  });
}

export function summarizeValue(value: ValueInfo): ValueSummary {
  return { name: value.name ?? '', type: describeType(value.type), shape: describeShape(value.type) };
}

/** `name  float32[batch_size,2,past_sequence_length,16]` */
export function formatValue(value: ValueSummary): string {
  const dims = value.shape ? `[${value.shape.map((d) => (d === null ? '?' : String(d))).join(',')}]` : '';
  return `${value.type ?? '(untyped)'}${dims}`;
}
