import { elementTypeName, packedBytes } from './element-types.js';
import { opKey, walkNodes } from './graph-walk.js';
import { elementCount } from './initializers.js';
import type { AttributeProto, ModelProto, NodeProto, TensorProto } from './proto-types.js';

/** How (and whether) a model's weights are quantized. */
export const QUANT_METHODS = ['dynamic-int8', 'qdq', 'qlinear', 'matmulnbits', 'gather-block-quantized'] as const;
export type QuantMethod = (typeof QUANT_METHODS)[number];

export interface QuantizationInfo {
  quantized: boolean;
  methods: QuantMethod[];
  /** Bit widths of quantized weights seen (from MatMulNBits/GatherBlockQuantized bits, or 8 for int8 forms). */
  weightBits: number[];
  /** Quantization-related ops and their counts. */
  quantizedOps: Record<string, number>;
  /** Initializer parameters per element type. */
  parametersByType: Record<string, number | bigint>;
  /** MatMul/Gemm/com.microsoft.FusedMatMul nodes whose weight is a float constant (directly or through Transpose/Reshape/Cast). */
  floatConstantMatMuls: string[];
  /** DequantizeLinear nodes that rebuild a whole table feeding a Gather on every call. */
  fullTableDequantizeGathers: string[];
}

const DYNAMIC = new Set(['DynamicQuantizeLinear', 'MatMulInteger', 'ConvInteger', 'com.microsoft.DynamicQuantizeMatMul', 'com.microsoft.MatMulIntegerToFloat', 'com.microsoft.DynamicQuantizeLSTM']);
const QDQ = new Set(['QuantizeLinear', 'DequantizeLinear', 'com.microsoft.QuantizeLinear', 'com.microsoft.DequantizeLinear']);

function methodOf(key: string): QuantMethod | undefined {
  if (DYNAMIC.has(key)) return 'dynamic-int8';
  if (QDQ.has(key)) return 'qdq';
  const op = key.slice(key.lastIndexOf('.') + 1);
  if (op.startsWith('QLinear') || key === 'com.microsoft.QGemm' || key === 'com.microsoft.QAttention') return 'qlinear';
  if (key === 'com.microsoft.MatMulNBits') return 'matmulnbits';
  if (key === 'com.microsoft.GatherBlockQuantized') return 'gather-block-quantized';
  return undefined;
}

function intAttribute(node: NodeProto, name: string): number | undefined {
  const a: AttributeProto | undefined = (node.attribute ?? []).find((x) => x.name === name);
  return a?.i === undefined ? undefined : Number(a.i);
}

const FLOAT_TYPES = new Set([1, 10, 11, 16]);
const PASS_THROUGH = new Set(['Transpose', 'Reshape', 'Cast', 'Identity', 'Squeeze', 'Unsqueeze']);

export function detectQuantization(model: ModelProto, parametersByType: Record<string, number | bigint>): QuantizationInfo {
  const graph = model.graph ?? {};
  const initializers = new Map<string, TensorProto>((graph.initializer ?? []).map((t) => [t.name ?? '', t]));
  const nodes = [...walkNodes(graph)];
  const producer = new Map<string, NodeProto>();
  const consumers = new Map<string, NodeProto[]>();
  for (const node of nodes) {
    for (const out of node.output ?? []) producer.set(out, node);
    for (const input of node.input ?? []) consumers.set(input, [...(consumers.get(input) ?? []), node]);
  }
  const methods = new Set<QuantMethod>();
  const bits = new Set<number>();
  const quantizedOps: Record<string, number> = {};
  for (const node of nodes) {
    const key = opKey(node);
    const method = methodOf(key);
    if (!method) continue;
    methods.add(method);
    quantizedOps[key] = (quantizedOps[key] ?? 0) + 1;
    if (method === 'matmulnbits' || method === 'gather-block-quantized') bits.add(intAttribute(node, 'bits') ?? 4);
  }
  for (const t of initializers.values()) {
    if (methods.size === 0) break;
    if (t.data_type === 3 || t.data_type === 2) bits.add(8);
    if (t.data_type === 21 || t.data_type === 22) bits.add(4);
  }

  /** The float constant behind a value, through layout-only ops, if any. */
  const floatConstant = (name: string, depth = 0): TensorProto | undefined => {
    const init = initializers.get(name);
    if (init) return FLOAT_TYPES.has(init.data_type ?? 0) ? init : undefined;
    const node = producer.get(name);
    if (!node || depth > 8) return undefined;
    if ((node.domain ?? '') === '' && node.op_type === 'Constant') {
      const t = node.attribute?.find((a) => a.name === 'value')?.t;
      return t && FLOAT_TYPES.has(t.data_type ?? 0) && elementCount(t.dims) > 1n ? t : undefined;
    }
    if ((node.domain ?? '') === '' && PASS_THROUGH.has(node.op_type ?? '')) return floatConstant(node.input?.[0] ?? '', depth + 1);
    return undefined;
  };
  /**
   * The float MatMul of an rtn-float-zp weight's block offsets (python-bridge engine `_offset_nodes`):
   * A is per-block sums of an activation (Reshape <- ReduceSum), the output is added to a
   * MatMulNBits output. Part of a 4-bit weight (its float zero points), not a float weight left over.
   */
  const isBlockOffsetMatMul = (node: NodeProto): boolean => {
    const a = producer.get(node.input?.[0] ?? '');
    const sum = a?.op_type === 'Reshape' ? producer.get(a.input?.[0] ?? '') : undefined;
    if (sum?.op_type !== 'ReduceSum') return false;
    return (consumers.get(node.output?.[0] ?? '') ?? []).some((c) => c.op_type === 'Add' && (c.input ?? []).some((i) => producer.get(i)?.op_type === 'MatMulNBits'));
  };
  // A side under MatMulNBits' smallest block (16) is not a projection (e.g. the rotary frequencies
  // inv_freq[1, d/2] that onnxruntime's fusions leave as a MatMul): the bridge leaves it in float on purpose
  // (graphutil.MIN_PROJECTION_DIM).
  const isProjection = (dims: Array<number | bigint>): boolean => dims.length >= 2 && Math.min(...dims.map(Number)) >= 16;
  const floatConstantMatMuls: string[] = [];
  const fullTableDequantizeGathers: string[] = [];
  for (const node of nodes) {
    const domain = node.domain ?? '';
    // onnxruntime's fusions turn a tied head into FusedMatMul(A, E, transB=1): still a float MatMul on a constant
    if (domain === 'com.microsoft' && node.op_type === 'FusedMatMul') {
      const weight = node.input?.[1] ? floatConstant(node.input[1]) : undefined;
      if (weight && isProjection(weight.dims ?? [])) floatConstantMatMuls.push(node.name || node.output?.[0] || '(unnamed)');
      continue;
    }
    if (domain !== '' && domain !== 'ai.onnx') continue;
    if ((node.op_type === 'MatMul' && !isBlockOffsetMatMul(node)) || node.op_type === 'Gemm') {
      const weight = [node.input?.[1], node.input?.[0]].map((n) => (n ? floatConstant(n) : undefined)).find(Boolean);
      if (weight && isProjection(weight.dims ?? [])) floatConstantMatMuls.push(node.name || node.output?.[0] || '(unnamed)');
    }
    if (node.op_type === 'DequantizeLinear') {
      const table = initializers.get(node.input?.[0] ?? '');
      const feedsGather = (consumers.get(node.output?.[0] ?? '') ?? []).some((c) => c.op_type === 'Gather' && c.input?.[0] === node.output?.[0]);
      if (table && feedsGather && (table.dims ?? []).length === 2) fullTableDequantizeGathers.push(node.name || node.output?.[0] || '(unnamed)');
    }
  }
  return {
    quantized: methods.size > 0,
    methods: QUANT_METHODS.filter((m) => methods.has(m)),
    weightBits: [...bits].sort((a, b) => a - b),
    quantizedOps,
    parametersByType,
    floatConstantMatMuls,
    fullTableDequantizeGathers,
  };
}

