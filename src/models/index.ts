import { InputError } from '../errors.js';
import type { ManifestArchitecture } from '../manifest/schema.js';
import { gemma } from './gemma.js';
import { gemma2 } from './gemma2.js';
import { gemma3 } from './gemma3.js';
import { llama } from './llama.js';
import { mistral } from './mistral.js';
import { phi3 } from './phi3.js';
import { qwen2 } from './qwen2.js';
import { qwen3 } from './qwen3.js';
import { headDimOf, idList, kvHeadsOf, required, ropeOf } from './config.js';
import { type ArchitectureFacts, architectureFacts, withDefaults } from './facts.js';
import type { ArchitectureFamily, GenerationConfig, HfConfig, Preset } from './types.js';

export { headDimOf, idList, kvHeadsOf, required, ropeOf };
export type { ArchitectureFacts };

/** Every architecture family sphana supports: an explicit index, no self-registration. */
export const FAMILIES: readonly ArchitectureFamily[] = [llama, gemma, gemma2, qwen2, qwen3, mistral, gemma3, phi3];

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

/** The facts of the config's family, resolved for the config: what the bridge receives. */
export function factsFor(config: HfConfig): ArchitectureFacts {
  return architectureFacts(familyFor(config), config);
}

export function describeArchitecture(config: HfConfig): ManifestArchitecture {
  const family = familyFor(config);
  const facts = architectureFacts(family, config);
  const c = withDefaults(family, config);
  return {
    modelType: config.model_type ?? family.id,
    architecture: config.architectures?.[0] ?? '',
    layers: required(c, 'num_hidden_layers'),
    hiddenSize: required(c, 'hidden_size'),
    intermediateSize: required(c, 'intermediate_size'),
    numAttentionHeads: required(c, 'num_attention_heads'),
    numKvHeads: kvHeadsOf(c),
    headDim: facts.headDim,
    vocabSize: required(c, 'vocab_size'),
    contextLength: required(c, 'max_position_embeddings'),
    tiedEmbeddings: facts.tiedEmbeddings,
    rope: facts.rope.full_attention ?? ropeOf(c),
    slidingWindow: facts.slidingWindow,
    attnLogitSoftcapping: facts.attnLogitSoftcapping,
    finalLogitSoftcapping: facts.finalLogitSoftcapping,
  };
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

/** Parameter count implied by a config (decoder blocks, norms, embeddings, an untied head), from the family's facts. */
export function parameterCount(config: HfConfig): number {
  return factsFor(config).parameters;
}
