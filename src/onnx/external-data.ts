import { realpathSync, statSync } from 'node:fs';
import { isAbsolute, relative, resolve, sep } from 'node:path';
import { InputError } from '../errors.js';
import { tensorBytes } from './initializers.js';
import type { ModelProto, TensorProto } from './proto-types.js';
import { allTensors, externalEntry, isExternal, mainInitializerTensors } from './tensors.js';
import { unsafePathReason } from '../security/safe-path.js';

/**
 * External data is untrusted: a location must be a relative path that stays inside the
 * model's folder (no `..`, no absolute path, no symlink leading out), and every declared
 * range must fit inside the file. Problems are reported, never followed.
 */

export const KNOWN_EXTERNAL_KEYS = new Set(['location', 'offset', 'length', 'checksum']);

export type ExternalStatus = 'ok' | 'missing' | 'short' | 'unsafe' | 'invalid';

export interface ExternalFileStatus {
  location: string;
  status: ExternalStatus;
  /** Size of the file on disk, null when it was not (or must not be) looked at. */
  fileBytes: number | null;
  /** Highest offset + length any tensor needs from this file. */
  requiredBytes: number;
  tensors: number;
  reason?: string;
}

export interface ExternalDataReport {
  /** Sorted unique locations referenced by the main graph's initializers. */
  locations: string[];
  files: ExternalFileStatus[];
  /** external_data keys sphana does not know: reported, never obeyed. */
  unknownKeys: Array<{ tensor: string; key: string }>;
  ok: boolean;
}

/** Why a location is unsafe, or undefined when it is a plain relative path inside the folder. */
export function unsafeLocationReason(location: string): string | undefined {
  return unsafePathReason(location); // the one path validator (src/security/safe-path.ts)
}

/** Resolves a location inside `baseDir`, following symlinks; throws E_UNSAFE_EXTERNAL_DATA if it leaves. */
export function resolveLocation(baseDir: string, location: string): string {
  const reason = unsafeLocationReason(location);
  if (reason) throw unsafe(location, reason);
  const path = resolve(baseDir, location);
  let real: string;
  try {
    real = realpathSync(path);
  } catch {
    return path; // missing: the caller reports it; nothing is opened
  }
  const base = realpathSync(baseDir);
  const rel = relative(base, real);
  if (rel === '' || rel.startsWith(`..${sep}`) || rel === '..' || isAbsolute(rel)) {
    throw unsafe(location, 'resolves outside the model folder (symlink)');
  }
  return real;
}

function unsafe(location: string, reason: string): InputError {
  return new InputError('E_UNSAFE_EXTERNAL_DATA', `external data location '${location}' is unsafe: ${reason}`, {
    hint: 'external data must be a file inside the model folder; re-save the model with a relative location',
  });
}

function parseInteger(value: string | undefined): number | undefined | null {
  if (value === undefined) return undefined;
  return /^\d+$/.test(value) && Number.isSafeInteger(Number(value)) ? Number(value) : null;
}

export function checkExternalData(model: ModelProto, baseDir: string): ExternalDataReport {
  const locations = new Set<string>();
  for (const t of mainInitializerTensors(model)) {
    const location = isExternal(t) ? externalEntry(t, 'location') : undefined;
    if (location !== undefined) locations.add(location);
  }
  const files = new Map<string, ExternalFileStatus>();
  const unknownKeys: ExternalDataReport['unknownKeys'] = [];
  for (const tensor of allTensors(model)) {
    if (!isExternal(tensor)) continue;
    for (const entry of tensor.external_data ?? []) {
      if (!KNOWN_EXTERNAL_KEYS.has(entry.key ?? '')) unknownKeys.push({ tensor: tensor.name ?? '', key: entry.key ?? '' });
    }
    const location = externalEntry(tensor, 'location') ?? '';
    const row = files.get(location) ?? { location, status: 'ok' as ExternalStatus, fileBytes: null, requiredBytes: 0, tensors: 0 };
    files.set(location, row);
    row.tensors += 1;
    const offset = parseInteger(externalEntry(tensor, 'offset'));
    const length = parseInteger(externalEntry(tensor, 'length'));
    if (offset === null || length === null) {
      mark(row, 'invalid', `tensor '${tensor.name ?? ''}' has a non-numeric offset or length`);
      continue;
    }
    const need = (offset ?? 0) + (length ?? Number(tensorBytes(tensor as TensorProto)));
    row.requiredBytes = Math.max(row.requiredBytes, need);
  }
  for (const row of files.values()) {
    if (row.status !== 'ok') continue;
    let path: string;
    try {
      path = resolveLocation(baseDir, row.location);
    } catch (error) {
      mark(row, 'unsafe', (error as Error).message);
      continue;
    }
    let size: number;
    try {
      const stat = statSync(path);
      if (!stat.isFile()) { mark(row, 'missing', `'${row.location}' is not a regular file`); continue; }
      size = stat.size;
    } catch {
      mark(row, 'missing', `'${row.location}' not found next to the model`);
      continue;
    }
    row.fileBytes = size;
    if (size < row.requiredBytes) mark(row, 'short', `'${row.location}' has ${size} bytes, tensors need ${row.requiredBytes}`);
  }
  const list = [...files.values()].sort((a, b) => (a.location < b.location ? -1 : a.location > b.location ? 1 : 0));
  return { locations: [...locations].sort(), files: list, unknownKeys, ok: list.every((f) => f.status === 'ok') };
}

const SEVERITY: Record<ExternalStatus, number> = { ok: 0, short: 1, missing: 2, invalid: 3, unsafe: 4 };

function mark(row: ExternalFileStatus, status: ExternalStatus, reason: string): void {
  if (SEVERITY[status] >= SEVERITY[row.status]) {
    row.status = status;
    row.reason = reason;
  }
}
