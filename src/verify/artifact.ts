import { dirname, join } from 'node:path';
import { isSphanaError } from '../errors.js';
import { readManifest } from '../manifest/read.js';
import type { Manifest, Precision } from '../manifest/schema.js';
import { safePathIn } from '../security/safe-path.js';
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

/**
 * Resolves `ARTIFACT_DIR` or `path/to/manifest.json` through the manifest loader (schema,
 * bounded numbers, every path inside the folder, symlinks followed): InputError, exit 3.
 */
export function openArtifact(dirOrManifest: string): Artifact {
  const { dir, manifestPath, manifest } = readManifest(dirOrManifest);
  const configEntry = manifest.files.find((f) => f.role === 'config');
  const modelDir = configEntry ? dirname(safePathIn(dir, configEntry.path, { what: 'manifest files[] entry' })) : join(dir, 'onnx');
  const summaries = new Map<string, ModelSummary | { error: string }>();
  // Every manifest path was checked by the loader; this re-checks (a symlink may have been swapped since).
  const abs = (path: string) => safePathIn(dir, path, { what: 'manifest path' });
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

export function isSummary(s: ModelSummary | { error: string }): s is ModelSummary {
  return !('error' in s);
}

/** The last dimension of a model's `logits` output, when fixed. */
export function logitsVocab(s: ModelSummary): number | null {
  const logits = s.outputs.find((o) => o.name === 'logits');
  const d = logits?.shape?.[logits.shape.length - 1];
  return typeof d === 'number' ? d : null;
}
