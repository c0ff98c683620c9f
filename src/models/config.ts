import { InputError } from '../errors.js';
import type { HfConfig, Rope } from './types.js';

/** Reading a config.json: the numbers every family shares. */

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

/** RoPE settings: transformers 5 writes `rope_parameters`, older configs `rope_theta` + `rope_scaling`. */
export function ropeOf(config: HfConfig): Rope {
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
