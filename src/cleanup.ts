import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Paths to remove if the process ends before the work that owns them finishes (Ctrl-C, a
 * crash): staging folders and temporary files never outlive the command.
 */
const pending = new Set<string>();
const sweeps = new Set<string>();
let installed = false;

/** Staging entries a child process (the Python bridge) makes beside an output: `.<name>.sphana-…`. */
export const STAGING_ENTRY = /^\..*\.sphana-|^\.sphana-/;

/** Removes the staging entries left in `dir` (by a run that was killed). */
export function sweepStaging(dir: string): void {
  let names: string[] = [];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) if (STAGING_ENTRY.test(name)) rmSync(join(dir, name), { recursive: true, force: true });
}

function removeAll(): void {
  for (const path of pending) rmSync(path, { recursive: true, force: true });
  for (const dir of sweeps) sweepStaging(dir);
  pending.clear();
}

function install(): void {
  if (!installed) {
    process.once('exit', removeAll);
    installed = true;
  }
}

/** Sweeps `dir`'s staging entries at exit unless the returned function is called first. */
export function sweepOnExit(dir: string): () => void {
  install();
  sweeps.add(dir);
  return () => sweeps.delete(dir);
}

/** Registers `path` for removal at exit; call the returned function once the path is safe. */
export function removeOnExit(path: string): () => void {
  install();
  pending.add(path);
  return () => pending.delete(path);
}
