/** Helpers for the Python-side tests: temp folders, fake executables, process liveness. */
import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export function tempDir(prefix = 'sphana-py-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** Writes an executable file. */
export function script(path: string, text: string): string {
  writeFileSync(path, text);
  chmodSync(path, 0o755);
  return path;
}

/** A shell script answering sphana's probe like a Python of `version` would. */
export function fakePython(path: string, version: string, venv: 'yes' | 'no' = 'yes', executable = `/opt/fake/python${version}`): string {
  return script(path, `#!/bin/sh\necho "sphana-probe ${version} ${venv} ${executable}"\n`);
}

/**
 * Whether a process is alive. A zombie counts as dead: in containers whose PID 1 does
 * not reap, a killed orphan lingers as a zombie.
 */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
    return state !== 'Z' && state !== 'X';
  } catch {
    return process.platform !== 'linux';
  }
}

/** Polls until `check` holds (a liveness check after a kill may race the kernel by a few ms). */
export async function eventually(check: () => boolean, ms = 5000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (check()) return true;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  return check();
}
