/**
 * ONNX tensor element types: the name sphana reports (the ONNX enum name in lower case,
 * FLOAT as float32 and DOUBLE as float64) and the bits each element takes when packed.
 */
export const ELEMENT_TYPES = {
  0: { name: 'undefined', bits: 0 },
  1: { name: 'float32', bits: 32 },
  2: { name: 'uint8', bits: 8 },
  3: { name: 'int8', bits: 8 },
  4: { name: 'uint16', bits: 16 },
  5: { name: 'int16', bits: 16 },
  6: { name: 'int32', bits: 32 },
  7: { name: 'int64', bits: 64 },
  8: { name: 'string', bits: 0 },
  9: { name: 'bool', bits: 8 },
  10: { name: 'float16', bits: 16 },
  11: { name: 'float64', bits: 64 },
  12: { name: 'uint32', bits: 32 },
  13: { name: 'uint64', bits: 64 },
  14: { name: 'complex64', bits: 64 },
  15: { name: 'complex128', bits: 128 },
  16: { name: 'bfloat16', bits: 16 },
  17: { name: 'float8e4m3fn', bits: 8 },
  18: { name: 'float8e4m3fnuz', bits: 8 },
  19: { name: 'float8e5m2', bits: 8 },
  20: { name: 'float8e5m2fnuz', bits: 8 },
  21: { name: 'uint4', bits: 4 },
  22: { name: 'int4', bits: 4 },
  23: { name: 'float4e2m1', bits: 4 },
  24: { name: 'float8e8m0', bits: 8 },
  25: { name: 'uint2', bits: 2 },
  26: { name: 'int2', bits: 2 },
  27: { name: 'float6e2m3', bits: 6 },
  28: { name: 'float6e3m2', bits: 6 },
} as const;

export type ElementTypeId = keyof typeof ELEMENT_TYPES;
export type ElementTypeName = (typeof ELEMENT_TYPES)[ElementTypeId]['name'];

export const STRING_TYPE = 8;

export function elementTypeName(id: number | undefined): string {
  const known = ELEMENT_TYPES[(id ?? 0) as ElementTypeId];
  return known ? known.name : `unknown(${id})`;
}

export function elementBits(id: number | undefined): number {
  const known = ELEMENT_TYPES[(id ?? 0) as ElementTypeId];
  return known ? known.bits : 0;
}

/** Bytes of `count` packed elements: ceil(count * bits / 8), exact for any count. */
export function packedBytes(id: number | undefined, count: bigint): bigint {
  const bits = BigInt(elementBits(id));
  return (count * bits + 7n) / 8n;
}
