import { readFileSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { InputError, isSphanaError } from '../errors.js';
import { MANIFEST_FILE, MANIFEST_VERSION, type Manifest, type Precision } from '../manifest/schema.js';
import { type ModelSummary, inspectFile } from '../onnx/summary.js';

/** An artifact folder as the checks see it: the manifest, where things are, and cached model summaries. */
export interface Artifact {
  dir: string;
  manifestPath: string;
  manifest: Manifest;
  /** Absolute path of a manifest-relative path. */
  abs(path: string): string;
  /** The folder holding config.json and the tokenizer (the manifest's `config` file's folder). */
  modelDir: string;
  /** The ONNX reader's summary of a model (cached); an error string when it cannot be read. */
  summary(path: string): ModelSummary | { error: string };
  /** The model file of a precision, from the manifest. */
  modelPath(precision: Precision): string | undefined;
}

/** Resolves `ARTIFACT_DIR` or `path/to/manifest.json`, reads and shape-checks the manifest (InputError, exit 3). */
export function openArtifact(dirOrManifest: string): Artifact {
  const given = resolve(dirOrManifest);
  let stat;
  try {
    stat = statSync(given);
  } catch {
    throw new InputError('E_NO_ARTIFACT', `${dirOrManifest} does not exist`, { hint: 'pass an artifact folder (holding manifest.json) or the manifest itself' });
  }
  const manifestPath = stat.isDirectory() ? join(given, MANIFEST_FILE) : given;
  const dir = dirname(manifestPath);
  let text: string;
  try {
    text = readFileSync(manifestPath, 'utf8');
  } catch (error) {
    const missing = (error as NodeJS.ErrnoException).code === 'ENOENT';
    throw new InputError(missing ? 'E_NO_MANIFEST' : 'E_BAD_MANIFEST', missing ? `${dirOrManifest} has no ${MANIFEST_FILE}` : `cannot read ${manifestPath}: ${(error as Error).message}`, {
      hint: missing ? 'verify a folder written by `sphana export`' : undefined,
    });
  }
  let manifest: Manifest;
  try {
    manifest = JSON.parse(text) as Manifest;
  } catch (error) {
    throw new InputError('E_BAD_MANIFEST', `${manifestPath} is not valid JSON: ${(error as Error).message}`);
  }
  validateShape(manifest, manifestPath);
  const configEntry = manifest.files.find((f) => f.role === 'config');
  const modelDir = configEntry ? dirname(join(dir, configEntry.path)) : join(dir, 'onnx');
  const summaries = new Map<string, ModelSummary | { error: string }>();
  const abs = (path: string) => join(dir, path);
  return {
    dir,
    manifestPath,
    manifest,
    abs,
    modelDir,
    summary(path) {
      let s = summaries.get(path);
      if (!s) {
        try {
          s = inspectFile(abs(path));
        } catch (error) {
          if (!isSphanaError(error)) throw error;
          s = { error: `${path}: ${error.message}` };
        }
        summaries.set(path, s);
      }
      return s;
    },
    modelPath: (precision) => manifest.models.find((m) => m.precision === precision)?.path,
  };
}

function validateShape(m: Manifest, path: string): void {
  const bad = (what: string) => new InputError('E_BAD_MANIFEST', `${basename(path)} ${what}`, { hint: 'the manifest is damaged or not written by sphana' });
  if (typeof m !== 'object' || m === null || Array.isArray(m)) throw bad('is not a JSON object');
  if (m.manifestVersion !== MANIFEST_VERSION) throw bad(`has manifestVersion ${JSON.stringify(m.manifestVersion)}; this sphana reads version ${MANIFEST_VERSION}`);
  if (!Array.isArray(m.files) || m.files.some((f) => typeof f?.path !== 'string' || typeof f.bytes !== 'number' || typeof f.sha256 !== 'string')) throw bad('has no valid files list');
  if (!Array.isArray(m.models) || m.models.length === 0 || m.models.some((x) => typeof x?.path !== 'string' || typeof x.precision !== 'string')) throw bad('has no valid models list');
  const kv = m.kvCache;
  if (!kv || typeof kv.layers !== 'number' || typeof kv.numKvHeads !== 'number' || typeof kv.headDim !== 'number' || typeof kv.pastKeyTemplate !== 'string') throw bad('has no valid kvCache');
  if (!m.tokenizer || !Array.isArray(m.tokenizer.files) || !Array.isArray(m.tokenizer.eosTokenIds)) throw bad('has no valid tokenizer section');
}

export function isSummary(s: ModelSummary | { error: string }): s is ModelSummary {
  return !('error' in s);
}

/** The last dimension of a model's `logits` output, when fixed. */
export function logitsVocab(s: ModelSummary): number | null {
  const logits = s.outputs.find((o) => o.name === 'logits');
  const d = logits?.shape?.[logits.shape.length - 1];
  return typeof d === 'number' ? d : null;
}
