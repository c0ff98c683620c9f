import type { ArchitectureFamily, HfConfig } from './types.js';

/**
 * Gemma 2: attention and final-logit soft-capping, alternating sliding-window (4096) and global
 * layers, query_pre_attn_scalar, GQA, head_dim 256, tied embeddings. Sequences longer than the
 * window must still decode correctly with the exported KV cache.
 */
export const gemma2: ArchitectureFamily = {
  id: 'gemma2',
  architectures: ['Gemma2ForCausalLM'],
  traits: ['attention and final logit soft-capping', 'sliding-window layers (tiny: window 8, so tests pass it)', 'head_dim not equal to hidden/heads', 'tied embeddings'],
  defaultTiedEmbeddings: true,
  configDefaults: {
    head_dim: 256, hidden_activation: 'gelu_pytorch_tanh', query_pre_attn_scalar: 256, sliding_window: 4096,
    attn_logit_softcapping: 50.0, final_logit_softcapping: 30.0,
  },
  normOffset: 1,
  embeddingScale: 'sqrt-hidden',
  attentionBias: 'config',
  mlpBias: 'none',
  qkNorm: false,
  layerNorms: 4,
  fusedQkv: false,
  fusedGateUp: false,
  slidingWindow: 'layer-types',
  // Even layers (0, 2, ...) slide, odd ones attend globally.
  defaultLayerTypes: (c) => Array.from({ length: c.num_hidden_layers ?? 0 }, (_, i) => (i % 2 === 0 ? 'sliding_attention' : 'full_attention')),
  softcapping: true,
  activation: (c) => String(c.hidden_activation),
  presets: [
    {
      name: 'gemma-2-2b',
      hubId: 'google/gemma-2-2b',
      config: {
        architectures: ['Gemma2ForCausalLM'], model_type: 'gemma2', attention_bias: false, attention_dropout: 0.0,
        attn_logit_softcapping: 50.0, bos_token_id: 2, cache_implementation: 'hybrid', eos_token_id: 1,
        final_logit_softcapping: 30.0, head_dim: 256, hidden_act: 'gelu_pytorch_tanh', hidden_activation: 'gelu_pytorch_tanh',
        hidden_size: 2304, initializer_range: 0.02, intermediate_size: 9216, max_position_embeddings: 8192,
        num_attention_heads: 8, num_hidden_layers: 26, num_key_value_heads: 4, pad_token_id: 0, query_pre_attn_scalar: 256,
        rms_norm_eps: 1e-6, rope_theta: 10000.0, sliding_window: 4096, torch_dtype: 'float32', use_cache: true, vocab_size: 256000,
      },
      generationConfig: { bos_token_id: 2, cache_implementation: 'hybrid', eos_token_id: [1, 107], pad_token_id: 0 },
    },
  ],
  tiny(config: HfConfig): HfConfig {
    return {
      ...config,
      hidden_size: 64,
      intermediate_size: 128,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      head_dim: 32, // != 64 / 4
      query_pre_attn_scalar: 32,
      sliding_window: 8,
    };
  },
};
