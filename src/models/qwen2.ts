import type { ArchitectureFamily, HfConfig } from './types.js';

/** Qwen2 / Qwen2.5: biases on the q, k and v projections, GQA, large rope_theta, tied on the small ones. */
export const qwen2: ArchitectureFamily = {
  id: 'qwen2',
  architectures: ['Qwen2ForCausalLM'],
  traits: ['bias on q/k/v projections', 'grouped-query attention', 'tied embeddings (0.5B)'],
  defaultTiedEmbeddings: false,
  configDefaults: { use_sliding_window: false, sliding_window: 4096, max_window_layers: 28 },
  normOffset: 0,
  embeddingScale: 'none',
  attentionBias: 'qkv',
  mlpBias: 'none',
  qkNorm: false,
  layerNorms: 2,
  fusedQkv: false,
  fusedGateUp: false,
  slidingWindow: 'layer-types',
  // With use_sliding_window, the layers from max_window_layers on slide.
  defaultLayerTypes: (c) => Array.from({ length: c.num_hidden_layers ?? 0 }, (_, i) => (c.use_sliding_window && typeof c.sliding_window === 'number' && i >= (c.max_window_layers as number) ? 'sliding_attention' : 'full_attention')),
  softcapping: false,
  presets: [
    {
      name: 'qwen2.5-0.5b',
      hubId: 'Qwen/Qwen2.5-0.5B',
      config: {
        architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', attention_dropout: 0.0, bos_token_id: 151643,
        eos_token_id: 151643, hidden_act: 'silu', hidden_size: 896, initializer_range: 0.02, intermediate_size: 4864,
        max_position_embeddings: 32768, max_window_layers: 24, num_attention_heads: 14, num_hidden_layers: 24,
        num_key_value_heads: 2, rms_norm_eps: 1e-6, rope_theta: 1000000.0, sliding_window: 32768, tie_word_embeddings: true,
        torch_dtype: 'bfloat16', use_cache: true, use_mrope: false, use_sliding_window: false, vocab_size: 151936,
      },
      generationConfig: { bos_token_id: 151643, do_sample: false, eos_token_id: 151643, max_new_tokens: 2048 },
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
      max_window_layers: 2,
    };
  },
};
