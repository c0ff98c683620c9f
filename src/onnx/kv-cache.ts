import { elementTypeName } from './element-types.js';
import type { ModelProto, ValueInfo } from './proto-types.js';

/**
 * Finds a decoder's KV-cache I/O and reads its dimensions from the graph: layers from the
 * names, kv heads and head dim from the rank-4 [batch, kv_heads, past_seq, head_dim] shapes,
 * falling back to sphana's own metadata keys when the graph leaves them symbolic.
 */

export interface KvCacheInfo {
  layers: number;
  numKvHeads: number | null;
  headDim: number | null;
  dtype: string | null;
  pastKeyTemplate: string;
  pastValueTemplate: string;
  presentKeyTemplate: string | null;
  presentValueTemplate: string | null;
  /** Where numKvHeads/headDim came from: the graph's shapes or sphana's metadata. */
  source: { numKvHeads: 'graph' | 'metadata' | null; headDim: 'graph' | 'metadata' | null };
  /** Set when a dimension could not be determined or the I/O is inconsistent. */
  reason?: string;
  /** Set only when values use a different head dim from keys. */
  valueHeadDim?: number | null;
}

/** Metadata keys sphana writes into exported models. */
export const KV_METADATA_KEYS = { numKvHeads: 'sphana.num_kv_heads', headDim: 'sphana.head_dim' } as const;

interface Convention {
  pastKey: string;
  pastValue: string;
  present: Array<[string, string]>;
}

/** Naming conventions, most specific first. `%d` is the layer index. */
const CONVENTIONS: Convention[] = [
  { pastKey: 'past_key_values.%d.decoder.key', pastValue: 'past_key_values.%d.decoder.value', present: [['present.%d.decoder.key', 'present.%d.decoder.value']] },
  {
    pastKey: 'past_key_values.%d.key', pastValue: 'past_key_values.%d.value',
    present: [['present.%d.key', 'present.%d.value'], ['present_key_values.%d.key', 'present_key_values.%d.value']],
  },
  { pastKey: 'past_key_%d', pastValue: 'past_value_%d', present: [['present_key_%d', 'present_value_%d']] },
  { pastKey: 'past_key_self_%d', pastValue: 'past_value_self_%d', present: [['present_key_self_%d', 'present_value_self_%d']] },
  { pastKey: 'past.%d.key', pastValue: 'past.%d.value', present: [['present.%d.key', 'present.%d.value']] },
];

function templateRegex(template: string): RegExp {
  const escaped = template.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace('%d', '(\\d+)');
  return new RegExp(`^${escaped}$`);
}

function byLayer(values: ValueInfo[], template: string): Map<number, ValueInfo> {
  const re = templateRegex(template);
  const found = new Map<number, ValueInfo>();
  for (const v of values) {
    const m = re.exec(v.name ?? '');
    if (m) found.set(Number(m[1]), v);
  }
  return found;
}

type Dim = number | string | null;

function dims(v: ValueInfo | undefined): Dim[] | null {
  const shape = v?.type?.tensor_type?.shape;
  if (!shape) return null;
  return (shape.dim ?? []).map((d) => (d.dim_value !== undefined ? Number(d.dim_value) : d.dim_param ?? null));
}

export function detectKvCache(model: ModelProto, initializerNames: Set<string>): KvCacheInfo | null {
  const inputs = (model.graph?.input ?? []).filter((v) => !initializerNames.has(v.name ?? ''));
  const outputs = model.graph?.output ?? [];
  let best: { conv: Convention; keys: Map<number, ValueInfo>; values: Map<number, ValueInfo> } | undefined;
  for (const conv of CONVENTIONS) {
    const keys = byLayer(inputs, conv.pastKey);
    const values = byLayer(inputs, conv.pastValue);
    if (keys.size === 0 && values.size === 0) continue;
    if (!best || keys.size > best.keys.size) best = { conv, keys, values };
  }
  if (!best) return null;
  const { conv, keys, values } = best;
  const reasons: string[] = [];
  const indices = [...new Set([...keys.keys(), ...values.keys()])].sort((a, b) => a - b);
  const layers = indices.length;
  if (indices[layers - 1] !== layers - 1) reasons.push(`layer indices are not 0..${layers - 1} (${indices.join(',')})`);
  for (const i of indices) {
    if (!keys.has(i)) reasons.push(`layer ${i} has no ${conv.pastKey.replace('%d', String(i))}`);
    if (!values.has(i)) reasons.push(`layer ${i} has no ${conv.pastValue.replace('%d', String(i))}`);
  }
  let presentKeyTemplate: string | null = null;
  let presentValueTemplate: string | null = null;
  let presentKeys = new Map<number, ValueInfo>();
  let presentValues = new Map<number, ValueInfo>();
  for (const [pk, pv] of conv.present) {
    const k = byLayer(outputs, pk);
    const v = byLayer(outputs, pv);
    if (k.size > 0 || v.size > 0) {
      presentKeyTemplate = pk; presentValueTemplate = pv; presentKeys = k; presentValues = v;
      break;
    }
  }
  if (!presentKeyTemplate) reasons.push('no present outputs match the past inputs');
  else if (presentKeys.size !== layers || presentValues.size !== layers) {
    reasons.push(`${presentKeys.size} present keys and ${presentValues.size} present values for ${layers} layers`);
  }

  const metadata = new Map((model.metadata_props ?? []).map((e) => [e.key ?? '', e.value ?? '']));
  const pick = (axis: number, which: string, metaKey: string, tensors: Array<ValueInfo | undefined>) => {
    const seen = new Set<Dim>();
    let badRank = false;
    for (const t of tensors) {
      const d = dims(t);
      if (!d || d.length !== 4) { badRank = true; continue; }
      seen.add(d[axis]);
    }
    if (badRank) reasons.push(`a KV tensor is not rank 4 [batch, kv_heads, past_seq, head_dim]`);
    const numbers = [...seen].filter((d): d is number => typeof d === 'number');
    if (numbers.length > 1) {
      reasons.push(`${which} differs between KV tensors (${numbers.join(', ')})`);
      return { value: null, source: null };
    }
    if (numbers.length === 1 && seen.size === 1) return { value: numbers[0], source: 'graph' as const };
    const meta = metadata.get(metaKey);
    if (meta !== undefined && /^\d+$/.test(meta)) return { value: Number(meta), source: 'metadata' as const };
    const symbolic = [...seen].filter((d) => typeof d === 'string');
    reasons.push(`${which} is ${symbolic.length ? `symbolic ('${symbolic.join("', '")}')` : 'unknown'} in the graph and there is no ${metaKey} metadata`);
    return { value: null, source: null };
  };
  const keyTensors = [...keys.values(), ...presentKeys.values()];
  const valueTensors = [...values.values(), ...presentValues.values()];
  const all = [...keyTensors, ...valueTensors];
  const heads = pick(1, 'kv heads', KV_METADATA_KEYS.numKvHeads, all);
  const headDim = pick(3, 'head dim', KV_METADATA_KEYS.headDim, keyTensors);
  const valueDims = new Set(valueTensors.map((t) => dims(t)?.[3]).filter((d): d is number => typeof d === 'number'));
  const dtypes = new Set(all.map((t) => elementTypeName(t?.type?.tensor_type?.elem_type)));
  if (dtypes.size > 1) reasons.push(`KV tensors mix element types (${[...dtypes].join(', ')})`);

  const info: KvCacheInfo = {
    layers,
    numKvHeads: heads.value,
    headDim: headDim.value,
    dtype: dtypes.size === 1 ? [...dtypes][0] : null,
    pastKeyTemplate: conv.pastKey,
    pastValueTemplate: conv.pastValue,
    presentKeyTemplate,
    presentValueTemplate,
    source: { numKvHeads: heads.source, headDim: headDim.source },
  };
  if (valueDims.size === 1 && headDim.value !== null && [...valueDims][0] !== headDim.value) info.valueHeadDim = [...valueDims][0];
  if (reasons.length) info.reason = [...new Set(reasons)].join('; ');
  return info;
}
