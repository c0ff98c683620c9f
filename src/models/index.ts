import { InputError } from '../errors.js';
import type { ManifestArchitecture } from '../manifest/schema.js';
import { gemma } from './gemma.js';
import { gemma2 } from './gemma2.js';
import { gemma3 } from './gemma3.js';
import { llama } from './llama.js';
import { phi3 } from './phi3.js';
import { qwen2 } from './qwen2.js';
import type { ArchitectureFamily, GenerationConfig, HfConfig, Preset } from './types.js';

/** Every architecture family sphana supports: an explicit index, no self-registration. */
export const FAMILIES: readonly ArchitectureFamily[] = [llama, gemma, gemma2, qwen2, gemma3, phi3];

export const PRESETS: readonly Preset[] = FAMILIES.flatMap((f) => f.presets);

export function supportedArchitectures(): string[] {
  return FAMILIES.flatMap((f) => f.architectures);
}

export function findPreset(name: string): Preset {
  const preset = PRESETS.find((p) => p.name === name.toLowerCase() || p.hubId.toLowerCase() === name.toLowerCase());
  if (!preset) {
    throw new InputError('E_UNKNOWN_MODEL', `unknown model '${name}'; presets: ${PRESETS.map((p) => p.name).join(', ')}`, {
      hint: 'run `sphana models` for the list, or pass a local Hugging Face folder (./path/with/config.json)',
    });
  }
  return preset;
}

export function familyFor(config: HfConfig, where = 'config.json'): ArchitectureFamily {
  const arch = config.architectures?.[0];
  const family = FAMILIES.find((f) => arch !== undefined && f.architectures.includes(arch));
  if (!family) {
    throw new InputError('E_UNSUPPORTED_ARCHITECTURE', `${where}: architecture ${arch ?? '(none)'} is not supported; supported: ${supportedArchitectures().join(', ')}`, {
      hint: 'export a model of a supported architecture',
    });
  }
  return family;
}

/** Head dim as the model computes it: config.head_dim when set, else hidden / heads. */
export function headDimOf(config: HfConfig): number {
  if (typeof config.head_dim === 'number') return config.head_dim;
  return Math.floor(required(config, 'hidden_size') / required(config, 'num_attention_heads'));
}

export function kvHeadsOf(config: HfConfig): number {
  return typeof config.num_key_value_heads === 'number' ? config.num_key_value_heads : required(config, 'num_attention_heads');
}

export function required(config: HfConfig, key: keyof HfConfig & string): number {
  const value = config[key];
  if (typeof value !== 'number') throw new InputError('E_BAD_CONFIG', `config.json has no numeric ${key}`, { hint: 'the model folder is incomplete' });
  return value;
}

export function idList(value: number | number[] | null | undefined): number[] {
  if (value === null || value === undefined) return [];
  return Array.isArray(value) ? value : [value];
}

export function describeArchitecture(config: HfConfig): ManifestArchitecture {
  const family = familyFor(config);
  return {
    modelType: config.model_type ?? family.id,
    architecture: config.architectures?.[0] ?? '',
    layers: required(config, 'num_hidden_layers'),
    hiddenSize: required(config, 'hidden_size'),
    intermediateSize: required(config, 'intermediate_size'),
    numAttentionHeads: required(config, 'num_attention_heads'),
    numKvHeads: kvHeadsOf(config),
    headDim: headDimOf(config),
    vocabSize: required(config, 'vocab_size'),
    contextLength: required(config, 'max_position_embeddings'),
    tiedEmbeddings: config.tie_word_embeddings ?? family.defaultTiedEmbeddings,
    rope: ropeOf(config),
    slidingWindow: family.id === 'gemma2' || config.use_sliding_window ? (config.sliding_window ?? null) : null,
    attnLogitSoftcapping: config.attn_logit_softcapping ?? null,
    finalLogitSoftcapping: config.final_logit_softcapping ?? null,
  };
}

/** RoPE settings: transformers 5 writes `rope_parameters`, older configs `rope_theta` + `rope_scaling`. */
export function ropeOf(config: HfConfig): { theta: number; scaling: Record<string, unknown> | null } {
  const params = config.rope_parameters as Record<string, unknown> | undefined;
  if (params && typeof params === 'object') {
    const flat = typeof params.rope_theta === 'number' ? params : (Object.values(params).find((v) => typeof v === 'object' && v !== null) as Record<string, unknown> | undefined);
    const theta = typeof flat?.rope_theta === 'number' ? flat.rope_theta : (config.rope_theta ?? 10000);
    const { rope_theta: _theta, ...rest } = flat ?? {};
    const scaling = flat === params ? rest : params;
    return { theta, scaling: Object.keys(scaling).length && (scaling as { rope_type?: string }).rope_type !== 'default' ? scaling : null };
  }
  return { theta: config.rope_theta ?? 10000, scaling: config.rope_scaling ?? null };
}

/**
 * The tiny synthetic variant of a preset: the family's tiny shape, the given vocabulary size,
 * and special token ids moved into that vocabulary when they do not fit (keeping which ids are equal).
 */
export function tinyVariant(preset: Preset, vocabSize: number): { config: HfConfig; generationConfig: GenerationConfig } {
  const family = familyFor(preset.config);
  const config: HfConfig = { ...family.tiny(preset.config), vocab_size: vocabSize };
  const generationConfig: GenerationConfig = { ...preset.generationConfig };
  const ids = [config.bos_token_id, config.pad_token_id, ...idList(config.eos_token_id), generationConfig.bos_token_id, generationConfig.pad_token_id, ...idList(generationConfig.eos_token_id)]
    .filter((v): v is number => typeof v === 'number');
  if (ids.every((id) => id < vocabSize)) return { config, generationConfig };
  const mapping = new Map([...new Set(ids)].sort((a, b) => a - b).map((id, i) => [id, i]));
  const remap = (v: unknown) => (typeof v === 'number' ? mapping.get(v) : Array.isArray(v) ? v.map((x) => mapping.get(x)) : v);
  for (const target of [config, generationConfig] as Array<Record<string, unknown>>) {
    for (const key of ['bos_token_id', 'eos_token_id', 'pad_token_id']) if (key in target) target[key] = remap(target[key]);
  }
  return { config, generationConfig };
}

export type { ArchitectureFamily, GenerationConfig, HfConfig, Preset };

/** Parameter count implied by a config (decoder blocks, norms, embeddings, an untied head). */
export function parameterCount(config: HfConfig): number {
  const a = describeArchitecture(config);
  const h = a.hiddenSize;
  const q = a.numAttentionHeads * a.headDim;
  const kv = a.numKvHeads * a.headDim;
  const bias = config.model_type === 'qwen2' ? q + 2 * kv : 0;
  const norms = config.model_type === 'gemma2' ? 4 * h : 2 * h;
  const layer = h * q + 2 * h * kv + q * h + bias + 3 * h * a.intermediateSize + norms;
  return a.vocabSize * h * (a.tiedEmbeddings ? 1 : 2) + a.layers * layer + h;
}
