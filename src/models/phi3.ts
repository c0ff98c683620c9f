import type { ArchitectureFamily, HfConfig } from './types.js';

/**
 * Phi-3 (Phi3ForCausalLM): fused qkv_proj and gate_up_proj, multi-head attention (kv heads =
 * heads), a sliding window on every layer (2047 in the 4k model), untied head. The 128k variants'
 * LongRoPE (rope_scaling type longrope: short/long factors switched at
 * original_max_position_embeddings) is exported with the switch in the graph.
 *
 * Preset figures: microsoft/Phi-3-mini-4k-instruct config.json (as reproduced in TensorRT-LLM's
 * test_modeling_phi3.py PHI3_MINI_4K_CONFIG), generation_config.json eos [32000, 32001, 32007];
 * they give the published 3,821,079,552 parameters (keras-hub phi3_mini_4k_instruct_en).
 */
export const phi3: ArchitectureFamily = {
  id: 'phi3',
  architectures: ['Phi3ForCausalLM'],
  traits: ['fused qkv_proj and gate_up_proj', 'a sliding window on every layer (tiny: 8, so tests pass it)', 'untied LM head', 'LongRoPE (128k variants): short/long factors switched in the graph'],
  defaultTiedEmbeddings: false,
  // Phi3Config's defaults for the keys the facts read (no window unless config.json sets one).
  configDefaults: { hidden_act: 'silu', sliding_window: null, rope_theta: 10000 },
  normOffset: 0,
  embeddingScale: 'none',
  attentionBias: 'none',
  mlpBias: 'none',
  qkNorm: false,
  layerNorms: 2,
  fusedQkv: true,
  fusedGateUp: true,
  slidingWindow: 'every-layer',
  softcapping: false,
  presets: [
    {
      name: 'phi-3-mini-4k',
      hubId: 'microsoft/Phi-3-mini-4k-instruct',
      config: {
        architectures: ['Phi3ForCausalLM'], model_type: 'phi3', attention_bias: false, attention_dropout: 0.0, bos_token_id: 1,
        embd_pdrop: 0.0, eos_token_id: 32000, hidden_act: 'silu', hidden_size: 3072, initializer_range: 0.02,
        intermediate_size: 8192, max_position_embeddings: 4096, num_attention_heads: 32, num_hidden_layers: 32,
        num_key_value_heads: 32, original_max_position_embeddings: 4096, pad_token_id: 32000, resid_pdrop: 0.0,
        rms_norm_eps: 1e-5, rope_scaling: null, rope_theta: 10000.0, sliding_window: 2047, tie_word_embeddings: false,
        torch_dtype: 'bfloat16', use_cache: true, vocab_size: 32064,
      },
      generationConfig: { bos_token_id: 1, eos_token_id: [32000, 32001, 32007], pad_token_id: 32000 },
    },
  ],
  tiny(config: HfConfig): HfConfig {
    return {
      ...config,
      hidden_size: 64,
      intermediate_size: 128,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      num_key_value_heads: 4,
      sliding_window: 8,
    };
  },
};
