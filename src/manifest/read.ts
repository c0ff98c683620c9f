import { existsSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { InputError } from '../errors.js';
import { readJson } from '../tokenizer/special-tokens.js';
import { MANIFEST_FILE, MANIFEST_VERSION, type Manifest } from './schema.js';

/** Reads a manifest from an artifact folder or a manifest.json path. */
export function readManifest(target: string): { dir: string; manifest: Manifest } {
  const path = existsSync(target) && statSync(target).isDirectory() ? join(target, MANIFEST_FILE) : target;
  if (!existsSync(path)) {
    throw new InputError('E_NO_MANIFEST', `${target}: no ${MANIFEST_FILE}`, { hint: 'pass an artifact folder written by `sphana export`' });
  }
  const manifest = readJson<Manifest>(path, 'manifest');
  if (manifest.manifestVersion !== MANIFEST_VERSION) {
    throw new InputError('E_MANIFEST_VERSION', `${path}: manifestVersion ${String(manifest.manifestVersion)} is not supported (expected ${MANIFEST_VERSION})`, {
      hint: 'use the sphana version that wrote it',
    });
  }
  return { dir: dirname(resolve(path)), manifest };
}
