import type { ArchitectureFamily, HfConfig } from './types.js';

/**
 * Qwen3 (dense): per-head RMSNorm on queries and keys before RoPE, no q/k/v bias (unlike Qwen2),
 * head_dim 128 independent of hidden / heads, GQA, tied embeddings on the small ones.
 */
export const qwen3: ArchitectureFamily = {
  id: 'qwen3',
  architectures: ['Qwen3ForCausalLM'],
  traits: ['q/k RMSNorm (per head, before RoPE)', 'no q/k/v bias', 'head_dim not equal to hidden/heads', 'grouped-query attention', 'tied embeddings'],
  defaultTiedEmbeddings: false,
  // transformers 5.18 Qwen3Config defaults for the keys the facts read.
  configDefaults: { head_dim: 128, attention_bias: false, use_sliding_window: false, sliding_window: 4096, max_window_layers: 28 },
  normOffset: 0,
  embeddingScale: 'none',
  attentionBias: 'config',
  mlpBias: 'none',
  qkNorm: true,
  layerNorms: 2,
  fusedQkv: false,
  fusedGateUp: false,
  slidingWindow: 'layer-types',
  // As Qwen2: with use_sliding_window, the layers from max_window_layers on slide (off in the released models).
  defaultLayerTypes: (c) => Array.from({ length: c.num_hidden_layers ?? 0 }, (_, i) => (c.use_sliding_window && typeof c.sliding_window === 'number' && i >= (c.max_window_layers as number) ? 'sliding_attention' : 'full_attention')),
  softcapping: false,
  presets: [
    {
      name: 'qwen3-0.6b',
      hubId: 'Qwen/Qwen3-0.6B',
      // config.json and generation_config.json of Qwen/Qwen3-0.6B on the Hugging Face Hub (transformers 4.51.0),
      // as published; the model card's "0.6B parameters, 0.44B non-embedding, 28 layers, 16 Q / 8 KV heads,
      // 32,768 context" agrees (40960 = 32768 + 8192 generation room).
      config: {
        architectures: ['Qwen3ForCausalLM'], model_type: 'qwen3', attention_bias: false, attention_dropout: 0.0,
        bos_token_id: 151643, eos_token_id: 151645, head_dim: 128, hidden_act: 'silu', hidden_size: 1024,
        initializer_range: 0.02, intermediate_size: 3072, max_position_embeddings: 40960, max_window_layers: 28,
        num_attention_heads: 16, num_hidden_layers: 28, num_key_value_heads: 8, rms_norm_eps: 1e-6, rope_scaling: null,
        rope_theta: 1000000, sliding_window: null, tie_word_embeddings: true, torch_dtype: 'bfloat16', use_cache: true,
        use_sliding_window: false, vocab_size: 151936,
      },
      generationConfig: { bos_token_id: 151643, do_sample: true, eos_token_id: [151645, 151643], pad_token_id: 151643, temperature: 0.6, top_k: 20, top_p: 0.95 },
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
      head_dim: 32, // != 64 / 4, as 128 != 1024 / 16
      max_window_layers: 2,
    };
  },
};
