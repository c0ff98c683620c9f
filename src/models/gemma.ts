import type { ArchitectureFamily, HfConfig } from './types.js';

/** Gemma (1): multi-query attention (one kv head), head_dim 256, embeddings scaled by sqrt(hidden), tied. */
export const gemma: ArchitectureFamily = {
  id: 'gemma',
  architectures: ['GemmaForCausalLM'],
  traits: ['a single kv head (multi-query)', 'head_dim not equal to hidden/heads', 'tied embeddings'],
  defaultTiedEmbeddings: true,
  configDefaults: { head_dim: 256, hidden_act: 'gelu_pytorch_tanh' },
  normOffset: 1,
  embeddingScale: 'sqrt-hidden',
  attentionBias: 'config',
  mlpBias: 'none',
  qkNorm: false,
  layerNorms: 2,
  fusedQkv: false,
  fusedGateUp: false,
  slidingWindow: 'none',
  softcapping: false,
  // transformers reads the released configs' legacy "gelu" as the tanh approximation it meant.
  activation: (c) => (c.hidden_act === 'gelu' ? 'gelu_pytorch_tanh' : String(c.hidden_act)),
  presets: [
    {
      name: 'gemma-2b',
      hubId: 'google/gemma-2b',
      config: {
        architectures: ['GemmaForCausalLM'], model_type: 'gemma', attention_bias: false, attention_dropout: 0.0,
        bos_token_id: 2, eos_token_id: 1, pad_token_id: 0, head_dim: 256, hidden_act: 'gelu',
        hidden_activation: 'gelu_pytorch_tanh', hidden_size: 2048, initializer_range: 0.02, intermediate_size: 16384,
        max_position_embeddings: 8192, num_attention_heads: 8, num_hidden_layers: 18, num_key_value_heads: 1,
        rms_norm_eps: 1e-6, rope_scaling: null, rope_theta: 10000.0, torch_dtype: 'bfloat16', use_cache: true, vocab_size: 256000,
      },
      generationConfig: { bos_token_id: 2, eos_token_id: 1, pad_token_id: 0 },
    },
  ],
  tiny(config: HfConfig): HfConfig {
    return {
      ...config,
      hidden_size: 64,
      intermediate_size: 128,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      num_key_value_heads: 1,
      head_dim: 32, // != 64 / 4
    };
  },
};
