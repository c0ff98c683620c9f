/**
 * manifest.json (manifestVersion 1): everything a consumer needs to load an artifact folder
 * without guessing. Every figure is read back from the written files (the ONNX reader, the
 * tokenizer files, the configs), cross-checked, then recorded here.
 */

export const MANIFEST_VERSION = 1 as const;
export const MANIFEST_FILE = 'manifest.json';

import type { Precision, SyntheticSize } from '../vocabulary.js';

export { PRECISIONS, type Precision } from '../vocabulary.js';

export const FILE_ROLES = ['model', 'model-data', 'tokenizer', 'tokenizer-config', 'special-tokens', 'config', 'generation-config', 'genai-config'] as const;
export type FileRole = (typeof FILE_ROLES)[number];

export interface ManifestFile {
  /** Relative to the folder holding manifest.json, with forward slashes. */
  path: string;
  bytes: number;
  sha256: string;
  role: FileRole;
  /** For models and their data: which precision they belong to. */
  precision?: Precision;
}

export interface ManifestKvCache {
  layers: number;
  numKvHeads: number;
  headDim: number;
  dtype: string;
  pastKeyTemplate: string;
  pastValueTemplate: string;
  presentKeyTemplate: string;
  presentValueTemplate: string;
}

export interface ManifestTokenizer {
  format: 'tokenizer.json' | 'tokenizer.model';
  files: string[];
  bosTokenId: number | null;
  eosTokenIds: number[];
  padTokenId: number | null;
  vocabSize: number;
  /** True when the tokenizer was generated for synthetic weights (not the model's real one). */
  synthetic: boolean;
}

export interface ManifestArchitecture {
  modelType: string;
  architecture: string;
  layers: number;
  hiddenSize: number;
  intermediateSize: number;
  numAttentionHeads: number;
  numKvHeads: number;
  headDim: number;
  vocabSize: number;
  contextLength: number;
  tiedEmbeddings: boolean;
  rope: { theta: number; scaling: Record<string, unknown> | null };
  slidingWindow: number | null;
  attnLogitSoftcapping: number | null;
  finalLogitSoftcapping: number | null;
}

export interface ManifestModel {
  precision: Precision;
  /** The .onnx file, relative to the manifest. */
  path: string;
  /** External data files it references, relative to the manifest. */
  externalData: string[];
  inputs: Array<{ name: string; type: string | null; shape: Array<number | string | null> | null }>;
  outputs: Array<{ name: string; type: string | null; shape: Array<number | string | null> | null }>;
  opset: number;
  parameters: number;
  /** Ops outside the standard ONNX domain (`com.microsoft.GroupQueryAttention`, …): a consumer's runtime must implement them. */
  requiredOps: string[];
}

/** The export's onnxruntime fusions (--optimize ort), when asked for. */
export interface ManifestOptimization {
  mode: string;
  applied: boolean;
  /** Why the unfused model was kept. */
  reason: string | null;
  /** 'stamped': a fused template layer stamped per layer; 'full-graph': the whole traced graph fused (no stamping). */
  method: string | null;
  fusionCounts: Record<string, number>;
  nonStandardOps: string[];
  /** The fused model's parity figures against the export's own PyTorch reference. */
  parity: Record<string, unknown> | null;
}

export interface QuantizationAttempt {
  strategy: string;
  /** The setting tried, e.g. 'weight-only level 4' (weight-only and dynamic alike). */
  setting?: string;
  ok: boolean;
  seconds: number;
  error?: { class: string; message: string };
  agreement?: { top1: number; cosine: number; positions: number };
  bytes?: number;
  /** Decode tokens/s of the candidate and of fp32 in the quantize gate's probe. */
  speed?: { candidate: number; fp32: number; ratio: number; seconds: number };
}

export interface QuantizationSection {
  precision: Precision;
  strategy: string;
  /** The accepted setting, and the scheme and settings the bridge used (scheme, bits, blockSize, accuracyLevel, ...). */
  setting?: string;
  settings?: Record<string, string | number | boolean>;
  head?: { tied: boolean; bits: number; accuracyLevel: number; quantized: boolean } | null;
  speed?: QuantizationAttempt['speed'] | null;
  /** True when the shipped artifact decoded slower than fp32 in the probe: said, never hidden. */
  slowerThanFp32?: boolean;
  attempts: QuantizationAttempt[];
}

/** The GGUF file an artifact was made from: its identity and what its header says. */
export interface ManifestGgufSource {
  /** The file's name (not its path: the manifest does not record where the user kept it). */
  file: string;
  bytes: number;
  sha256: string;
  /** general.architecture (llama.cpp's name for the family, e.g. `llama`). */
  architecture: string;
  /** general.file_type as llama.cpp names it (e.g. `MOSTLY_Q4_1`), or null when absent. */
  fileType: string | null;
  /** The GGML types of its tensors, most frequent first (e.g. `["Q4_1", "F32", "Q8_0"]`). */
  quantizationTypes: string[];
  /** GGML type → number of tensors. */
  tensorTypes: Record<string, number>;
  /** tokenizer.ggml.bos_token_id / eos_token_id, cross-checked against the written configs. */
  bosTokenId: number | null;
  eosTokenId: number | null;
}

/** One precision's quality section (the shape of src/quality/gates.ts QualityReport). */
export interface ManifestQuality {
  precision: Exclude<Precision, 'fp32'>;
  text: 'corpus' | 'synthetic';
  corpusVersion: number;
  sequences: number;
  positions: number;
  scoredTokens: number;
  top1: number;
  nearTieTop1: number;
  nearTieNats: number;
  disagreements: number;
  nearTieDisagreements: number;
  meanKl: number;
  maxKl: number;
  meanCosine: number;
  ppl: { fp32: number; quantized: number; delta: number; deltaPercent: number } | null;
  gate: { top1: number; cosine: number; kl: number; nearTieNats: number };
  passed: boolean;
  reason: string;
}

export interface Manifest {
  manifestVersion: typeof MANIFEST_VERSION;
  name: string;
  artifactVersion: string;
  createdAt: string;
  source: {
    preset: string | null;
    hubId: string | null;
    revision: string | null;
    synthetic: SyntheticSize | null;
    seed: number | null;
    weightsFrom: string;
    /** Set when the weights came from a GGUF file (`weightsFrom: 'gguf'`), dequantized to fp32 before the export. */
    gguf?: ManifestGgufSource;
  };
  architecture: ManifestArchitecture;
  kvCache: ManifestKvCache;
  tokenizer: ManifestTokenizer;
  models: ManifestModel[];
  files: ManifestFile[];
  quantization: QuantizationSection | null;
  /**
   * Quality per quantized precision against fp32 on the shipped corpus (src/quality/gates.ts
   * QualityReport: perplexities and Δppl, mean/max KL, top-1 plain and margin-aware, the gate
   * and its verdict): from verify when it ran, else from the quantize acceptance check.
   */
  quality: Partial<Record<Exclude<Precision, 'fp32'>, ManifestQuality>> | null;
  verification: Record<string, unknown> | null;
  parity: Record<string, unknown> | null;
  optimization?: ManifestOptimization | null;
  tools: Record<string, string>;
}
