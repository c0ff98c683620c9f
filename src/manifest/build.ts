import { join } from 'node:path';
import { JobFailedError } from '../errors.js';
import { fileBytes, listArtifactFiles, sha256File, writeFileAtomic } from '../artifacts/files.js';
import { describeArchitecture, headDimOf, kvHeadsOf, type HfConfig } from '../models/index.js';
import { type ModelSummary, inspectFile } from '../onnx/summary.js';
import { readJson, readTokenizerFacts } from '../tokenizer/special-tokens.js';
import {
  MANIFEST_FILE, MANIFEST_VERSION, type FileRole, type Manifest, type ManifestFile, type ManifestKvCache,
  type ManifestModel, type Precision,
} from './schema.js';

/** Where the genai-loadable model folder lives inside an artifact folder. */
export const MODEL_SUBDIR = 'onnx';

export interface ManifestInput {
  /** The artifact folder: manifest.json goes here, models in `onnx/`. */
  dir: string;
  name: string;
  artifactVersion: string;
  source: Manifest['source'];
  /** Model files relative to `dir`, e.g. `onnx/llm_generator.onnx`. */
  models: Array<{ precision: Precision; path: string }>;
  tokenizerSynthetic: boolean;
  quantization: Manifest['quantization'];
  quality?: Manifest['quality'];
  parity: Manifest['parity'];
  verification: Manifest['verification'];
  tools: Record<string, string>;
  optimization?: Manifest['optimization'];
}

/** Ops of a non-standard domain (the reader keys them `domain.op_type`; `ai.onnx.ml` and the like count too). */
export function requiredOps(summary: Pick<ModelSummary, 'ops'>): string[] {
  return Object.keys(summary.ops).filter((op) => op.includes('.') && !op.startsWith('ai.onnx.')).sort();
}

const ROLES: Array<[RegExp, FileRole]> = [
  [/\.onnx$/, 'model'],
  [/\.onnx\.data$|\.onnx_data$|\.data$/, 'model-data'],
  [/(^|\/)tokenizer\.(json|model)$/, 'tokenizer'],
  [/(^|\/)tokenizer_config\.json$/, 'tokenizer-config'],
  [/(^|\/)special_tokens_map\.json$/, 'special-tokens'],
  [/(^|\/)generation_config\.json$/, 'generation-config'],
  [/(^|\/)genai_config\.json$/, 'genai-config'],
  [/(^|\/)config\.json$/, 'config'],
];

export function roleOf(path: string): FileRole | undefined {
  return ROLES.find(([re]) => re.test(path))?.[1];
}

function kvOf(summary: ModelSummary): ManifestKvCache {
  const kv = summary.kvCache;
  if (!kv || kv.numKvHeads === null || kv.headDim === null || !kv.presentKeyTemplate || !kv.presentValueTemplate || kv.reason) {
    throw new JobFailedError('E_KV_UNREADABLE', `${summary.path}: KV cache not fully readable from the graph (${kv?.reason ?? 'no KV inputs'})`);
  }
  return {
    layers: kv.layers, numKvHeads: kv.numKvHeads, headDim: kv.headDim, dtype: kv.dtype ?? 'float32',
    pastKeyTemplate: kv.pastKeyTemplate, pastValueTemplate: kv.pastValueTemplate,
    presentKeyTemplate: kv.presentKeyTemplate, presentValueTemplate: kv.presentValueTemplate,
  };
}

/** Reads the written artifacts back, cross-checks them against config.json, and builds the manifest. */
export async function buildManifest(input: ManifestInput): Promise<Manifest> {
  const modelDir = join(input.dir, MODEL_SUBDIR);
  const config = readJson<HfConfig>(join(modelDir, 'config.json'), 'model config');
  const architecture = describeArchitecture(config);
  const tokenizer = readTokenizerFacts(modelDir, { synthetic: input.tokenizerSynthetic });
  const models: ManifestModel[] = [];
  let kvCache: ManifestKvCache | undefined;
  const precisionOf = new Map<string, Precision>();
  for (const m of input.models) {
    const summary = inspectFile(join(input.dir, m.path));
    if (summary.problems.length) throw new JobFailedError('E_ARTIFACT_BROKEN', `${m.path}: ${summary.problems[0].message}`);
    const kv = kvOf(summary);
    if (kvCache && JSON.stringify(kvCache) !== JSON.stringify(kv)) {
      throw new JobFailedError('E_KV_MISMATCH', `${m.path}: KV cache ${JSON.stringify(kv)} differs from ${JSON.stringify(kvCache)}`);
    }
    kvCache = kv;
    const logits = summary.outputs.find((o) => o.name === 'logits');
    const vocabDim = logits?.shape?.[logits.shape.length - 1];
    if (typeof vocabDim === 'number' && vocabDim !== architecture.vocabSize) {
      throw new JobFailedError('E_VOCAB_MISMATCH', `${m.path}: logits have ${vocabDim} entries, config.json says vocab_size ${architecture.vocabSize}`);
    }
    const folder = m.path.includes('/') ? m.path.slice(0, m.path.lastIndexOf('/') + 1) : '';
    const externalData = summary.externalDataFiles.map((f) => `${folder}${f.location}`);
    precisionOf.set(m.path, m.precision);
    for (const f of externalData) precisionOf.set(f, m.precision);
    models.push({
      precision: m.precision, path: m.path, externalData, inputs: summary.inputs, outputs: summary.outputs,
      opset: summary.opsets[''] ?? 0, parameters: Number(summary.initializers.parameters), requiredOps: requiredOps(summary),
    });
  }
  if (!kvCache) throw new JobFailedError('E_NO_MODELS', 'no model files to describe');
  const expected = { layers: architecture.layers, numKvHeads: kvHeadsOf(config), headDim: headDimOf(config) };
  for (const key of ['layers', 'numKvHeads', 'headDim'] as const) {
    if (kvCache[key] !== expected[key]) {
      throw new JobFailedError('E_KV_MISMATCH', `the graph says ${key} = ${kvCache[key]}, config.json says ${expected[key]}`, { details: { graph: kvCache, config: expected } });
    }
  }
  if (tokenizer.vocabSize > architecture.vocabSize) {
    throw new JobFailedError('E_TOKENIZER_MISMATCH', `the tokenizer has ${tokenizer.vocabSize} tokens but the model only ${architecture.vocabSize} logits`, {
      hint: "ship the model's own tokenizer",
    });
  }
  const gguf = input.source.gguf;
  if (gguf && (tokenizer.bosTokenId !== gguf.bosTokenId || (gguf.eosTokenId === null ? tokenizer.eosTokenIds.length > 0 : !tokenizer.eosTokenIds.includes(gguf.eosTokenId)))) {
    throw new JobFailedError('E_GGUF_MISMATCH', `the artifact's tokenizer says BOS ${tokenizer.bosTokenId}, EOS [${tokenizer.eosTokenIds.join(', ')}]; ${gguf.file}'s metadata says BOS ${gguf.bosTokenId}, EOS ${gguf.eosTokenId}`, {
      hint: "the converted configs lost the GGUF's token ids; rerun with --force",
    });
  }
  const files: ManifestFile[] = [];
  for (const path of listArtifactFiles(input.dir)) {
    if (path === MANIFEST_FILE) continue;
    const role = roleOf(path);
    if (!role) continue;
    const abs = join(input.dir, path);
    const precision = precisionOf.get(path);
    files.push({ path, bytes: fileBytes(abs), sha256: await sha256File(abs), role, ...(precision ? { precision } : {}) });
  }
  return {
    manifestVersion: MANIFEST_VERSION,
    name: input.name,
    artifactVersion: input.artifactVersion,
    createdAt: new Date().toISOString(),
    source: input.source,
    architecture,
    kvCache,
    tokenizer: { ...tokenizer, files: tokenizer.files.map((f) => `${MODEL_SUBDIR}/${f}`) },
    models,
    files,
    quantization: input.quantization,
    quality: input.quality ?? null,
    verification: input.verification,
    parity: input.parity,
    ...(input.optimization !== undefined ? { optimization: input.optimization } : {}),
    tools: input.tools,
  };
}

export function writeManifest(dir: string, manifest: Manifest): void {
  writeFileAtomic(join(dir, MANIFEST_FILE), `${JSON.stringify(manifest, null, 2)}\n`);
}
