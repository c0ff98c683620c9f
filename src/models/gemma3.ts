import { ropeOf } from './config.js';
import type { ArchitectureFamily, HfConfig, LayerType, Rope } from './types.js';

const SLIDING: LayerType = 'sliding_attention';
const FULL: LayerType = 'full_attention';

/** Gemma 3's layer pattern: (pattern - 1) sliding-window layers, then one global, repeated (pattern 6: five to one). */
function pattern(layers: number, every = 6): LayerType[] {
  return Array.from({ length: layers }, (_, i) => ((i + 1) % every === 0 ? FULL : SLIDING));
}

/**
 * RoPE per layer type: global layers use rope_theta (and rope_scaling, linear x8 on 4B and up),
 * sliding layers rope_local_base_freq and no scaling; transformers 5 configs nest both under
 * rope_parameters instead.
 */
function ropeByLayerType(c: HfConfig): Partial<Record<LayerType, Rope>> {
  const nested = c.rope_parameters as Record<string, unknown> | undefined;
  const of = (t: LayerType): Rope => {
    const own = nested && typeof nested === 'object' ? nested[t] : undefined;
    if (own && typeof own === 'object') return ropeOf({ rope_parameters: own as Record<string, unknown> });
    return t === FULL ? { theta: c.rope_theta as number, scaling: c.rope_scaling ?? null } : { theta: c.rope_local_base_freq as number, scaling: null };
  };
  const types = layerTypes(c);
  return Object.fromEntries([...new Set(types)].map((t) => [t, of(t)]));
}

function layerTypes(c: HfConfig): LayerType[] {
  const layers = c.num_hidden_layers ?? 0;
  if (Array.isArray(c.layer_types) && c.layer_types.length === layers) return c.layer_types as LayerType[];
  return pattern(layers, (c.sliding_window_pattern as number | undefined) ?? 6);
}

/**
 * Gemma 3 text (Gemma3ForCausalLM, model_type gemma3_text): q/k RMSNorm, five sliding-window
 * layers (window 512, rope theta 10k) to one global layer (rope theta 1M), one kv head,
 * head_dim 256, query_pre_attn_scalar, Gemma's (1 + w) norms, embeddings scaled by sqrt(hidden), tied.
 *
 * Preset figures: config.json of google/gemma-3-1b-it (as reproduced in TensorRT-LLM's
 * test_modeling_gemma3.py GEMMA3_1B_CONFIG, whose layers and window that test shrinks) and the
 * GGUF metadata of gemma-3-270m (Ollama: block_count 18, embedding_length 640, feed_forward_length
 * 2048, head_count 4, head_count_kv 1, key_length 256, sliding_window 512, rope freq_base 1e6,
 * context 32768, token_embd [640, 262144]); both checked against the published parameter counts
 * (keras-hub gemma3 presets: 999,885,952 and 268,098,176), which these shapes give exactly.
 */
export const gemma3: ArchitectureFamily = {
  id: 'gemma3',
  architectures: ['Gemma3ForCausalLM'],
  traits: [
    'q/k RMSNorm with (1 + w) scales',
    'sliding-window and global layers mixed (tiny: 2 sliding + 1 global, window 8, so tests pass it on both kinds)',
    'rope theta per layer type (10k local, 1M global)',
    'a single kv head, head_dim not equal to hidden/heads',
    'tied embeddings',
  ],
  defaultTiedEmbeddings: true,
  // Gemma3TextConfig's defaults for the keys the facts read.
  configDefaults: {
    head_dim: 256, hidden_activation: 'gelu_pytorch_tanh', query_pre_attn_scalar: 256, sliding_window: 4096,
    rope_theta: 1_000_000, rope_local_base_freq: 10_000, attn_logit_softcapping: null, final_logit_softcapping: null,
  },
  normOffset: 1,
  embeddingScale: 'sqrt-hidden',
  attentionBias: 'config',
  mlpBias: 'none',
  qkNorm: true,
  layerNorms: 4,
  fusedQkv: false,
  fusedGateUp: false,
  slidingWindow: 'layer-types',
  defaultLayerTypes: layerTypes,
  softcapping: true,
  activation: (c) => String(c.hidden_activation),
  ropeByLayerType,
  presets: [
    {
      name: 'gemma-3-270m',
      hubId: 'google/gemma-3-270m-it',
      config: {
        architectures: ['Gemma3ForCausalLM'], model_type: 'gemma3_text', _sliding_window_pattern: 6, attention_bias: false,
        attention_dropout: 0.0, attn_logit_softcapping: null, bos_token_id: 2, eos_token_id: 1, final_logit_softcapping: null,
        head_dim: 256, hidden_activation: 'gelu_pytorch_tanh', hidden_size: 640, initializer_range: 0.02, intermediate_size: 2048,
        layer_types: pattern(18), max_position_embeddings: 32768, num_attention_heads: 4, num_hidden_layers: 18,
        num_key_value_heads: 1, pad_token_id: 0, query_pre_attn_scalar: 256, rms_norm_eps: 1e-6, rope_local_base_freq: 10000.0,
        rope_scaling: null, rope_theta: 1000000.0, sliding_window: 512, torch_dtype: 'bfloat16', use_bidirectional_attention: false,
        use_cache: true, vocab_size: 262144,
      },
      generationConfig: { bos_token_id: 2, cache_implementation: 'hybrid', do_sample: true, eos_token_id: [1, 106], pad_token_id: 0, top_k: 64, top_p: 0.95 },
    },
    {
      name: 'gemma-3-1b',
      hubId: 'google/gemma-3-1b-it',
      config: {
        architectures: ['Gemma3ForCausalLM'], model_type: 'gemma3_text', attention_bias: false, attention_dropout: 0.0,
        attn_logit_softcapping: null, bos_token_id: 2, cache_implementation: 'hybrid', eos_token_id: [1, 106],
        final_logit_softcapping: null, head_dim: 256, hidden_activation: 'gelu_pytorch_tanh', hidden_size: 1152,
        initializer_range: 0.02, intermediate_size: 6912, max_position_embeddings: 32768, num_attention_heads: 4,
        num_hidden_layers: 26, num_key_value_heads: 1, pad_token_id: 0, query_pre_attn_scalar: 256, rms_norm_eps: 1e-6,
        rope_local_base_freq: 10000, rope_scaling: null, rope_theta: 1000000, sliding_window: 512, sliding_window_pattern: 6,
        torch_dtype: 'bfloat16', use_cache: true, vocab_size: 262144,
      },
      generationConfig: { bos_token_id: 2, cache_implementation: 'hybrid', do_sample: true, eos_token_id: [1, 106], pad_token_id: 0, top_k: 64, top_p: 0.95 },
    },
  ],
  tiny(config: HfConfig): HfConfig {
    return {
      ...config,
      hidden_size: 64,
      intermediate_size: 128,
      num_hidden_layers: 3,
      num_attention_heads: 4,
      num_key_value_heads: 1,
      head_dim: 32, // != 64 / 4
      query_pre_attn_scalar: 32,
      sliding_window: 8,
      sliding_window_pattern: 3,
      layer_types: [SLIDING, SLIDING, FULL],
    };
  },
};
