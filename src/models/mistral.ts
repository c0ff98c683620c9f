import type { ArchitectureFamily, HfConfig } from './types.js';

/**
 * Mistral (7B v0.1): Llama's block with a sliding window on every layer (4096), GQA, untied head.
 * Sequences longer than the window must decode correctly with the exported full KV cache.
 */
export const mistral: ArchitectureFamily = {
  id: 'mistral',
  architectures: ['MistralForCausalLM'],
  traits: ['sliding window on every layer (tiny: window 8, so tests pass it)', 'grouped-query attention', 'untied LM head'],
  defaultTiedEmbeddings: false,
  // transformers 5.18 MistralConfig: sliding_window defaults to 4096 (null turns it off).
  configDefaults: { sliding_window: 4096 },
  normOffset: 0,
  embeddingScale: 'none',
  attentionBias: 'none',
  mlpBias: 'none',
  qkNorm: false,
  layerNorms: 2,
  fusedQkv: false,
  fusedGateUp: false,
  slidingWindow: 'every-layer',
  softcapping: false,
  presets: [
    {
      name: 'mistral-7b',
      hubId: 'mistralai/Mistral-7B-v0.1',
      // config.json and generation_config.json of mistralai/Mistral-7B-v0.1 on the Hugging Face Hub
      // (transformers 4.34.0.dev0), as published; the paper (arXiv 2310.06825, table 1) gives the same
      // dim 4096, 32 layers, head_dim 128, hidden 14336, 32 / 8 heads, window 4096, vocab 32000.
      config: {
        architectures: ['MistralForCausalLM'], model_type: 'mistral', bos_token_id: 1, eos_token_id: 2, hidden_act: 'silu',
        hidden_size: 4096, initializer_range: 0.02, intermediate_size: 14336, max_position_embeddings: 32768,
        num_attention_heads: 32, num_hidden_layers: 32, num_key_value_heads: 8, rms_norm_eps: 1e-5, rope_theta: 10000.0,
        sliding_window: 4096, tie_word_embeddings: false, torch_dtype: 'bfloat16', use_cache: true, vocab_size: 32000,
      },
      generationConfig: { bos_token_id: 1, eos_token_id: 2 },
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
      head_dim: 16,
      sliding_window: 8, // below the parity prompt's 12 + 4 positions (and its 12-token prefill)
    };
  },
};
