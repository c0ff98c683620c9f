import { join } from 'node:path';
import { isSphanaError } from '../errors.js';
import { type HfConfig, headDimOf, kvHeadsOf } from '../models/index.js';
import { readJson } from '../tokenizer/special-tokens.js';
import { type Artifact, isSummary, logitsVocab } from './artifact.js';
import { checkResult, listSome } from './check.js';
import type { CheckResult } from './types.js';
import { requiredOps } from '../manifest/build.js';

const KEYS = ['layers', 'numKvHeads', 'headDim'] as const;
const NAMES = { layers: 'layers', numKvHeads: 'kv heads', headDim: 'head dim' } as const;

/** Reads config.json's KV dims (head dim = config.head_dim or hidden / heads). */
export function configKv(config: HfConfig): Record<(typeof KEYS)[number], number | null> {
  const attempt = (f: () => number) => {
    try {
      return f();
    } catch {
      return null;
    }
  };
  return {
    layers: typeof config.num_hidden_layers === 'number' ? config.num_hidden_layers : null,
    numKvHeads: attempt(() => kvHeadsOf(config)),
    headDim: attempt(() => headDimOf(config)),
  };
}

/**
 * Check 2, structure: the manifest's kvCache equals what the ONNX reader finds in every
 * model file and what config.json says; the logits dimension equals config.vocab_size.
 */
export function checkStructure(artifact: Artifact): CheckResult {
  const started = performance.now();
  const kv = artifact.manifest.kvCache;
  const manifestKv = { layers: kv.layers, numKvHeads: kv.numKvHeads, headDim: kv.headDim };
  const mismatches: string[] = [];
  const unreadable: string[] = [];
  let config: HfConfig | null = null;
  try {
    config = readJson<HfConfig>(join(artifact.modelDir, 'config.json'), 'model config');
  } catch (error) {
    if (!isSphanaError(error)) throw error;
    unreadable.push(error.message);
  }
  const fromConfig = config ? configKv(config) : null;
  if (fromConfig) {
    for (const key of KEYS) {
      if (fromConfig[key] === null) mismatches.push(`config.json does not state ${NAMES[key]}`);
      else if (fromConfig[key] !== manifestKv[key]) mismatches.push(`the manifest says ${NAMES[key]} ${manifestKv[key]}, config.json says ${fromConfig[key]}`);
    }
  }
  const models: Record<string, unknown> = {};
  for (const model of artifact.manifest.models) {
    const summary = artifact.summary(model.path);
    if (!isSummary(summary)) {
      unreadable.push(summary.error);
      continue;
    }
    const found = summary.kvCache;
    const vocab = logitsVocab(summary);
    models[model.path] = found
      ? { layers: found.layers, numKvHeads: found.numKvHeads, headDim: found.headDim, dtype: found.dtype, logitsVocab: vocab, reason: found.reason ?? null }
      : { kvCache: null, logitsVocab: vocab };
    if (!found) {
      mismatches.push(`${model.path} has no KV-cache inputs`);
      continue;
    }
    for (const key of KEYS) {
      if (found[key] !== manifestKv[key]) mismatches.push(`the manifest says ${NAMES[key]} ${manifestKv[key]}, ${model.path} has ${found[key] ?? 'unknown'}`);
    }
    for (const key of ['pastKeyTemplate', 'pastValueTemplate', 'presentKeyTemplate', 'presentValueTemplate'] as const) {
      if (found[key] !== kv[key]) mismatches.push(`the manifest says ${key} ${kv[key]}, ${model.path} has ${found[key]}`);
    }
    if ((found.dtype ?? 'float32') !== kv.dtype) mismatches.push(`the manifest says KV dtype ${kv.dtype}, ${model.path} has ${found.dtype}`);
    if (found.reason) mismatches.push(`${model.path}: ${found.reason}`);
    // Untrusted: an older manifest has no list; anything but a list of strings is a mismatch.
    const listed: unknown = (model as { requiredOps?: unknown }).requiredOps;
    if (listed !== undefined) {
      const needs = requiredOps(summary);
      if (!Array.isArray(listed) || listed.length > 1000 || !listed.every((x) => typeof x === 'string')) {
        mismatches.push(`the manifest's requiredOps for ${model.path} is not a list of op names`);
      } else if (needs.join(',') !== [...listed].sort().join(',')) {
        mismatches.push(`the manifest says ${model.path} needs ops [${listed.slice(0, 20).join(', ')}], the graph uses [${needs.join(', ')}]`);
      }
    }
    if (config && typeof config.vocab_size === 'number' && vocab !== null && vocab !== config.vocab_size) {
      mismatches.push(`${model.path} has ${vocab} logits, config.json says vocab_size ${config.vocab_size}`);
    }
  }
  const figures = { manifest: manifestKv, config: fromConfig, models, mismatches, unreadable };
  if (mismatches.length) {
    return checkResult('structure', 'failed', started, figures, mismatches.length > 1 ? `${mismatches[0]} (+${mismatches.length - 1} more)` : mismatches[0]);
  }
  if (unreadable.length) return checkResult('structure', 'skipped', started, figures, `cannot read ${listSome(unreadable, 2)}`);
  const n = artifact.manifest.models.length;
  return checkResult('structure', 'passed', started, figures,
    `${kv.layers} layers × ${kv.numKvHeads} kv heads × ${kv.headDim} head dim, same in the manifest, config.json and ${n} model${n === 1 ? '' : 's'}`);
}
