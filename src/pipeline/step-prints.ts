import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { type ArchitectureFacts, type HfConfig, factsFor } from '../models/index.js';
import { requirementsHash } from '../python/paths.js';
import { protoLimitBytes } from '../quantize/run.js';
import { readJson } from '../tokenizer/special-tokens.js';
import { fingerprint } from './state.js';

/** What the export's step fingerprints depend on. */
export interface PrintInputs {
  identity: Record<string, unknown>;
  exporter: string;
  optimize: string;
  precision: string;
  strategy: string;
  quant?: Record<string, unknown>;
  /**
   * The architecture facts the export request carries (exportFacts), or null while the folder the
   * export reads does not exist yet (synthetic or GGUF weights before their `weights` step): a
   * family whose facts changed re-exports instead of reusing an export made under the old facts.
   */
  architecture: ArchitectureFacts | null;
}

export interface StepPrints {
  weights: string;
  export: string;
  assemble: string;
  quantize: string;
  verify(fileSha256s: string[]): string;
}

/**
 * The fingerprints that decide whether a step is up to date: one definition for the pipeline and for
 * `export --dry-run`, so the plan's "skip" is exactly the run's.
 */
export function stepPrints(i: PrintInputs): StepPrints {
  const weightsPrint = fingerprint({ identity: i.identity, requirements: requirementsHash() });
  const exportPrint = fingerprint({ weightsPrint, exporter: i.exporter, limit: protoLimitBytes(), architecture: i.architecture, optimize: i.optimize });
  const assemblePrint = fingerprint({ weightsPrint, exportPrint });
  const quantPrint = fingerprint({ exportPrint, precision: i.precision, strategy: i.strategy, quant: i.quant ?? {} });
  return {
    weights: weightsPrint, export: exportPrint, assemble: assemblePrint, quantize: quantPrint,
    verify: (files) => fingerprint({ quantPrint, assemblePrint, files }),
  };
}

/** The Hugging Face folder the export step reads: the source's own, else the work folder's (converted or synthesized weights). */
export function exportInputDir(sourceDir: string | undefined, artifactDir: string): string {
  return sourceDir ?? join(artifactDir, '.sphana-work', 'hf');
}

/**
 * The architecture facts of the export request for the folder `hfDir`: null when it has no
 * config.json yet, unless `required` (then its absence is the usual missing-config error).
 */
export function exportFacts(hfDir: string, required = false): ArchitectureFacts | null {
  const path = join(hfDir, 'config.json');
  return required || existsSync(path) ? factsFor(readJson<HfConfig>(path, 'model config')) : null;
}
