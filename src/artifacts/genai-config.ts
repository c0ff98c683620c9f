import type { ManifestArchitecture, ManifestKvCache } from '../manifest/schema.js';

/**
 * genai_config.json so that onnxruntime-genai can load the model folder as it is. The export's
 * present = past + new tokens, so past and present do not share a buffer.
 */
export function genaiConfig(options: {
  filename: string;
  architecture: ManifestArchitecture;
  kvCache: ManifestKvCache;
  bosTokenId: number | null;
  eosTokenIds: number[];
  padTokenId: number | null;
}): Record<string, unknown> {
  const { architecture: a, kvCache: kv } = options;
  return {
    model: {
      bos_token_id: options.bosTokenId,
      context_length: a.contextLength,
      decoder: {
        session_options: { log_id: 'onnxruntime-genai', provider_options: [] },
        filename: options.filename,
        head_size: kv.headDim,
        hidden_size: a.hiddenSize,
        inputs: {
          input_ids: 'input_ids',
          attention_mask: 'attention_mask',
          position_ids: 'position_ids',
          past_key_names: kv.pastKeyTemplate,
          past_value_names: kv.pastValueTemplate,
        },
        outputs: {
          logits: 'logits',
          present_key_names: kv.presentKeyTemplate,
          present_value_names: kv.presentValueTemplate,
        },
        num_attention_heads: a.numAttentionHeads,
        num_hidden_layers: kv.layers,
        num_key_value_heads: kv.numKvHeads,
      },
      eos_token_id: options.eosTokenIds.length === 1 ? options.eosTokenIds[0] : options.eosTokenIds,
      pad_token_id: options.padTokenId ?? options.eosTokenIds[0] ?? 0,
      type: a.modelType,
      vocab_size: a.vocabSize,
    },
    search: {
      diversity_penalty: 0.0, do_sample: false, early_stopping: true, length_penalty: 1.0,
      max_length: Math.min(a.contextLength, 4096), min_length: 0, no_repeat_ngram_size: 0, num_beams: 1,
      num_return_sequences: 1, past_present_share_buffer: false, repetition_penalty: 1.0,
      temperature: 1.0, top_k: 1, top_p: 1.0,
    },
  };
}
