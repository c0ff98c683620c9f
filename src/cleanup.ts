import { rmSync } from 'node:fs';

/**
 * Paths to remove if the process ends before the work that owns them finishes (Ctrl-C, a
 * crash): staging folders and temporary files never outlive the command.
 */
const pending = new Set<string>();
let installed = false;

function removeAll(): void {
  for (const path of pending) rmSync(path, { recursive: true, force: true });
  pending.clear();
}

/** Registers `path` for removal at exit; call the returned function once the path is safe. */
export function removeOnExit(path: string): () => void {
  if (!installed) {
    process.once('exit', removeAll);
    installed = true;
  }
  pending.add(path);
  return () => pending.delete(path);
}
