/** Where the bridge's files and its cached environment live. */
import { createHash } from 'node:crypto';
import { lstatSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { EnvironmentError } from '../errors.js';
import { processAlive } from './process-group.js';

/** <repo>/python-bridge, found from this compiled module (dist/src/python/paths.js). */
export function bridgeDir(): string {
  return fileURLToPath(new URL('../../../python-bridge', import.meta.url));
}

/** $SPHANA_CACHE_DIR, else $XDG_CACHE_HOME/sphana, else ~/.cache/sphana. */
export function cacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.SPHANA_CACHE_DIR) return env.SPHANA_CACHE_DIR;
  if (env.XDG_CACHE_HOME) return join(env.XDG_CACHE_HOME, 'sphana');
  return join(homedir(), '.cache', 'sphana');
}

/** First 12 hex digits of the sha256 over python-bridge/requirements*.txt (names and contents, in name order). */
export function requirementsHash(dir: string = bridgeDir()): string {
  let names: string[];
  try {
    names = readdirSync(dir).filter((name) => /^requirements.*\.txt$/.test(name)).sort();
  } catch {
    names = [];
  }
  if (!names.includes('requirements.txt')) {
    throw new EnvironmentError('E_BRIDGE_ENV', `the Python bridge is missing: no requirements.txt in ${dir}`, {
      hint: 'sphana\'s installation is incomplete; reinstall it (the python-bridge folder ships with the package)',
    });
  }
  const hash = createHash('sha256');
  for (const name of names) hash.update(`${name}\0`).update(readFileSync(join(dir, name))).update('\0');
  return hash.digest('hex').slice(0, 12);
}

export function venvPython(venvDir: string): string {
  return process.platform === 'win32' ? join(venvDir, 'Scripts', 'python.exe') : join(venvDir, 'bin', 'python');
}

/**
 * Removes build folders (`python-<hash>.tmp-<pid>-…`, `….trash-<pid>-…`) left by sphana
 * processes that are gone; those of a live process are still being built and are kept.
 */
export function cleanLeftovers(cache: string, log: (line: string) => void = () => {}): void {
  let entries: string[];
  try {
    entries = readdirSync(cache);
  } catch {
    return;
  }
  for (const name of entries) {
    const match = /^python-[0-9a-f]{12}\.(?:tmp|trash)-(\d+)-/.exec(name);
    if (!match) continue;
    const pid = Number(match[1]);
    if (pid !== process.pid && processAlive(pid)) continue;
    log(`removing leftover ${join(cache, name)}`);
    rmSync(join(cache, name), { recursive: true, force: true });
  }
}

/**
 * A venv records its own path in its scripts (shebang lines, activate); after the build under
 * a temporary name, point them at the final one.
 */
export function rewritePaths(venvDir: string, finalDir: string): void {
  const bin = join(venvDir, process.platform === 'win32' ? 'Scripts' : 'bin');
  let entries: string[];
  try {
    entries = readdirSync(bin);
  } catch {
    return;
  }
  for (const name of entries) {
    const path = join(bin, name);
    const stat = lstatSync(path);
    if (!stat.isFile() || stat.size > 256 * 1024) continue;
    const text = readFileSync(path, 'latin1');
    if (text.includes(venvDir)) writeFileSync(path, text.split(venvDir).join(finalDir), 'latin1');
  }
  const cfg = join(venvDir, 'pyvenv.cfg');
  try {
    const text = readFileSync(cfg, 'utf8');
    if (text.includes(venvDir)) writeFileSync(cfg, text.split(venvDir).join(finalDir));
  } catch {
    // pyvenv.cfg is always there; nothing to fix if it is not.
  }
}
