import { headDimOf, kvHeadsOf, required, ropeOf } from './config.js';
import type { ArchitectureFamily, HfConfig, LayerType, Rope } from './types.js';

/**
 * A family's facts resolved for one config: what the bridge receives (the `architecture` field of
 * `synthesize` and `export` requests, python-bridge/PROTOCOL.md) and what the manifest and the
 * parameter count are computed from. The bridge checks them against transformers' model and fails
 * on any disagreement, so a wrong family file cannot export quietly.
 */
export interface ArchitectureFacts {
  family: string;
  /** config.architectures[0]: the transformers class the bridge loads. */
  architecture: string;
  normOffset: 0 | 1;
  /** The factor applied to token embeddings, or null. */
  embeddingScale: number | null;
  attentionBias: 'none' | 'qkv' | 'qkvo';
  mlpBias: boolean;
  qkNorm: boolean;
  layerNorms: 2 | 4;
  fusedQkv: boolean;
  fusedGateUp: boolean;
  /** The window of the sliding layers; null when no layer slides. */
  slidingWindow: number | null;
  /** One entry per layer. */
  layerTypes: LayerType[];
  /** RoPE of each layer type present in layerTypes. */
  rope: Partial<Record<LayerType, Rope>>;
  attnLogitSoftcapping: number | null;
  finalLogitSoftcapping: number | null;
  activation: string;
  tiedEmbeddings: boolean;
  headDim: number;
  /** Parameters of transformers' model for this config (tied tables counted once). */
  parameters: number;
}

/** The config as transformers reads it: the family's class defaults under what config.json states. */
export function withDefaults(family: ArchitectureFamily, config: HfConfig): HfConfig {
  return { ...family.configDefaults, ...config };
}

function layerTypesOf(family: ArchitectureFamily, c: HfConfig): LayerType[] {
  const layers = required(c, 'num_hidden_layers');
  const all = (t: LayerType) => Array.from({ length: layers }, () => t);
  switch (family.slidingWindow) {
    case 'none': return all('full_attention');
    case 'every-layer': return all(typeof c.sliding_window === 'number' ? 'sliding_attention' : 'full_attention');
    case 'layer-types': {
      const listed = c.layer_types;
      if (Array.isArray(listed) && listed.length === layers) return listed as LayerType[];
      return family.defaultLayerTypes ? family.defaultLayerTypes(c) : all('full_attention');
    }
  }
}

function ropeByType(family: ArchitectureFamily, c: HfConfig, types: LayerType[]): Partial<Record<LayerType, Rope>> {
  if (family.ropeByLayerType) return family.ropeByLayerType(c);
  const params = c.rope_parameters as Record<string, unknown> | undefined;
  const out: Partial<Record<LayerType, Rope>> = {};
  for (const t of new Set(types)) {
    const nested = params && typeof params === 'object' ? params[t] : undefined;
    out[t] = nested && typeof nested === 'object' ? ropeOf({ ...c, rope_parameters: nested }) : ropeOf(c);
  }
  return out;
}

function countParameters(c: HfConfig, f: Omit<ArchitectureFacts, 'parameters'>): number {
  const h = required(c, 'hidden_size');
  const inter = required(c, 'intermediate_size');
  const q = required(c, 'num_attention_heads') * f.headDim;
  const kv = kvHeadsOf(c) * f.headDim;
  const attention = h * q + 2 * h * kv + q * h + (f.attentionBias === 'none' ? 0 : q + 2 * kv) + (f.attentionBias === 'qkvo' ? h : 0);
  const mlp = 3 * h * inter + (f.mlpBias ? 2 * inter + h : 0);
  const layer = attention + mlp + (f.qkNorm ? 2 * f.headDim : 0) + f.layerNorms * h;
  return required(c, 'vocab_size') * h * (f.tiedEmbeddings ? 1 : 2) + required(c, 'num_hidden_layers') * layer + h;
}

/** The family's facts for one config.json. */
export function architectureFacts(family: ArchitectureFamily, config: HfConfig): ArchitectureFacts {
  const c = withDefaults(family, config);
  const layerTypes = layerTypesOf(family, c);
  const slides = layerTypes.includes('sliding_attention');
  const facts: Omit<ArchitectureFacts, 'parameters'> = {
    family: family.id,
    architecture: config.architectures?.[0] ?? family.architectures[0],
    normOffset: family.normOffset,
    embeddingScale: family.embeddingScale === 'sqrt-hidden' ? Math.sqrt(required(c, 'hidden_size')) : null,
    attentionBias: family.attentionBias === 'config' ? (c.attention_bias === true ? 'qkvo' : 'none') : family.attentionBias,
    mlpBias: family.mlpBias === 'config' && c.mlp_bias === true,
    qkNorm: family.qkNorm,
    layerNorms: family.layerNorms,
    fusedQkv: family.fusedQkv,
    fusedGateUp: family.fusedGateUp,
    slidingWindow: slides && typeof c.sliding_window === 'number' ? c.sliding_window : null,
    layerTypes,
    rope: ropeByType(family, c, layerTypes),
    attnLogitSoftcapping: family.softcapping ? (c.attn_logit_softcapping ?? null) : null,
    finalLogitSoftcapping: family.softcapping ? (c.final_logit_softcapping ?? null) : null,
    activation: family.activation ? family.activation(c) : String(c.hidden_act ?? 'silu'),
    tiedEmbeddings: c.tie_word_embeddings ?? family.defaultTiedEmbeddings,
    headDim: headDimOf(c),
  };
  return { ...facts, parameters: countParameters(c, facts) };
}
