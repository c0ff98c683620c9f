import { readFileSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { InputError, fromSystemError } from '../errors.js';
import { safePathIn, unsafePathError, unsafePathReason } from '../security/safe-path.js';
import { MANIFEST_FILE, MANIFEST_VERSION, PRECISIONS, type Manifest } from './schema.js';

/**
 * The one loader of manifest.json (verify, deploy): a manifest is untrusted input. It is read
 * only if small, parsed, checked against the schema with every number bounded (so no check
 * can be made to allocate 50,000,000 layers), and every path it names (files, models, their
 * external data, tokenizer files) goes through the path validator, symlinks followed.
 */

/** A manifest larger than this is refused before it is read (a real one is a few hundred kB at most). */
export const MAX_MANIFEST_BYTES = 16 << 20;

/** Bounds of the numbers a manifest may hold; generous for real models, finite for hostile ones. */
export const MANIFEST_LIMITS = {
  files: 10_000,
  models: 16,
  externalData: 4096,
  tokenizerFiles: 64,
  eosTokenIds: 1024,
  io: 100_000,
  layers: 1024,
  heads: 1024,
  headDim: 8192,
  hiddenSize: 1 << 20,
  vocabSize: 1 << 24,
  contextLength: 1 << 24,
  fileBytes: 2 ** 50,
} as const;

export interface LoadedManifest {
  /** The folder holding manifest.json (absolute). */
  dir: string;
  manifestPath: string;
  manifest: Manifest;
}

/** Reads a manifest from an artifact folder or a manifest.json path (InputError, exit 3, when anything is wrong). */
export function readManifest(target: string): LoadedManifest {
  const given = resolve(target);
  let stat;
  try {
    stat = statSync(given);
  } catch {
    throw new InputError('E_NO_ARTIFACT', `${target} does not exist`, { hint: 'pass an artifact folder (holding manifest.json) or the manifest itself' });
  }
  const manifestPath = stat.isDirectory() ? join(given, MANIFEST_FILE) : given;
  const dir = dirname(manifestPath);
  const size = statSync(manifestPath, { throwIfNoEntry: false });
  if (!size) throw new InputError('E_NO_MANIFEST', `${target} has no ${MANIFEST_FILE}`, { hint: 'pass an artifact folder written by `sphana export`' });
  if (!size.isFile()) throw new InputError('E_BAD_MANIFEST', `${manifestPath} is not a regular file`);
  if (size.size > MAX_MANIFEST_BYTES) {
    throw new InputError('E_BAD_MANIFEST', `${manifestPath} is ${size.size} bytes; a manifest is at most ${MAX_MANIFEST_BYTES}`, { hint: 'the manifest is damaged or not written by sphana' });
  }
  let text: string;
  try {
    text = readFileSync(manifestPath, 'utf8');
  } catch (error) {
    throw fromSystemError(error) ?? new InputError('E_BAD_MANIFEST', `cannot read ${manifestPath}: ${(error as Error).message}`);
  }
  let manifest: Manifest;
  try {
    manifest = JSON.parse(text) as Manifest;
  } catch (error) {
    throw new InputError('E_BAD_MANIFEST', `${manifestPath} is not valid JSON: ${(error as Error).message}`);
  }
  validateManifest(manifest, manifestPath);
  checkManifestPaths(manifest, dir);
  return { dir, manifestPath, manifest };
}

/** Every path the manifest names, each with what it is. */
export function manifestPaths(m: Manifest): Array<{ path: string; what: string }> {
  return [
    ...m.files.map((f) => ({ path: f.path, what: 'manifest files[] entry' })),
    ...m.models.flatMap((x) => [{ path: x.path, what: 'manifest model' }, ...x.externalData.map((d) => ({ path: d, what: 'manifest external data' }))]),
    ...m.tokenizer.files.map((f) => ({ path: f, what: 'manifest tokenizer file' })),
  ];
}

/** Every path the manifest names stays inside `dir` (lexically and, following symlinks, on disk). Nothing is opened. */
export function checkManifestPaths(m: Manifest, dir: string): void {
  for (const { path, what } of manifestPaths(m)) safePathIn(dir, path, { what });
}

/** Schema and range checks; throws E_BAD_MANIFEST (or E_UNSAFE_PATH for a lexically unsafe path). */
export function validateManifest(m: Manifest, path: string): void {
  const bad = (what: string) => new InputError('E_BAD_MANIFEST', `${basename(path)} ${what}`, { hint: 'the manifest is damaged or not written by sphana' });
  const obj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  const int = (v: unknown, min: number, max: number) => typeof v === 'number' && Number.isSafeInteger(v) && v >= min && v <= max;
  const list = (v: unknown, max: number, what: string): unknown[] => {
    if (!Array.isArray(v)) throw bad(`has no valid ${what} list`);
    if (v.length > max) throw bad(`lists ${v.length} ${what}; at most ${max} are accepted`);
    return v;
  };
  const safe = (p: unknown, what: string) => {
    if (typeof p !== 'string') throw bad(`has a ${what} that is not a string`);
    const reason = unsafePathReason(p);
    if (reason) throw unsafePathError(p, reason, { what });
  };
  const bounded = (owner: string, o: Record<string, unknown>, key: string, min: number, max: number, required: boolean) => {
    const v = o[key];
    if ((v === undefined || v === null) && !required) return;
    if (!int(v, min, max)) throw bad(`has ${owner}.${key} ${JSON.stringify(v)}; expected an integer from ${min} to ${max}`);
  };
  const L = MANIFEST_LIMITS;
  if (!obj(m)) throw bad('is not a JSON object');
  if (m.manifestVersion !== MANIFEST_VERSION) throw bad(`has manifestVersion ${JSON.stringify(m.manifestVersion)}; this sphana reads version ${MANIFEST_VERSION}`);
  for (const f of list(m.files, L.files, 'files')) {
    if (!obj(f) || typeof f.path !== 'string' || typeof f.sha256 !== 'string' || typeof f.role !== 'string') throw bad('has no valid files list');
    safe(f.path, 'manifest files[] entry');
    if (!int(f.bytes, 0, L.fileBytes)) throw bad(`records ${JSON.stringify(f.bytes)} bytes for ${f.path}`);
    if (!/^[0-9a-f]{64}$/.test(f.sha256)) throw bad(`records an invalid sha256 for ${f.path}`);
  }
  const models = list(m.models, L.models, 'models');
  if (models.length === 0) throw bad('has no valid models list');
  for (const x of models) {
    if (!obj(x) || typeof x.path !== 'string' || !(PRECISIONS as readonly unknown[]).includes(x.precision)) throw bad('has no valid models list');
    safe(x.path, 'manifest model');
    if (x.externalData === undefined) x.externalData = [];
    for (const d of list(x.externalData, L.externalData, 'external data files')) safe(d, 'manifest external data');
    for (const key of ['inputs', 'outputs'] as const) if (x[key] !== undefined) list(x[key], L.io, `model ${key}`);
  }
  const kv = m.kvCache as unknown;
  if (!obj(kv) || typeof kv.pastKeyTemplate !== 'string') throw bad('has no valid kvCache');
  bounded('kvCache', kv, 'layers', 1, L.layers, true);
  bounded('kvCache', kv, 'numKvHeads', 1, L.heads, true);
  bounded('kvCache', kv, 'headDim', 1, L.headDim, true);
  for (const key of ['pastKeyTemplate', 'pastValueTemplate', 'presentKeyTemplate', 'presentValueTemplate']) {
    if (kv[key] !== undefined && (typeof kv[key] !== 'string' || (kv[key] as string).length > 256)) throw bad(`has an invalid kvCache.${key}`);
  }
  const a = m.architecture as unknown;
  if (a !== undefined && a !== null) {
    if (!obj(a)) throw bad('has an invalid architecture section');
    bounded('architecture', a, 'layers', 1, L.layers, false);
    bounded('architecture', a, 'numAttentionHeads', 1, L.heads, false);
    bounded('architecture', a, 'numKvHeads', 1, L.heads, false);
    bounded('architecture', a, 'headDim', 1, L.headDim, false);
    bounded('architecture', a, 'hiddenSize', 1, L.hiddenSize, false);
    bounded('architecture', a, 'intermediateSize', 1, L.hiddenSize * 8, false);
    bounded('architecture', a, 'vocabSize', 1, L.vocabSize, false);
    bounded('architecture', a, 'contextLength', 1, L.contextLength, false);
  }
  const t = m.tokenizer as unknown;
  if (!obj(t)) throw bad('has no valid tokenizer section');
  for (const f of list(t.files, L.tokenizerFiles, 'tokenizer files')) safe(f, 'manifest tokenizer file');
  for (const id of list(t.eosTokenIds, L.eosTokenIds, 'EOS token ids')) if (!int(id, 0, L.vocabSize)) throw bad(`has an invalid EOS token id ${JSON.stringify(id)}`);
  bounded('tokenizer', t, 'bosTokenId', 0, L.vocabSize, false);
  bounded('tokenizer', t, 'padTokenId', 0, L.vocabSize, false);
  bounded('tokenizer', t, 'vocabSize', 0, L.vocabSize, false);
}
