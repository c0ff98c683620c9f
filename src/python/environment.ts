/**
 * The bridge's Python environment: a venv in the user cache, keyed by the hash of
 * python-bridge/requirements*.txt, built under a temporary name and renamed into place
 * only once `pip install` succeeded, so a half-built environment is never picked up.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { EnvironmentError, InterruptedError } from '../errors.js';
import { type FoundPython, findPython, describeAttempt } from './find-python.js';
import { LineTail, startProcess } from './run-process.js';
import { bridgeDir, cacheDir, cleanLeftovers, rewritePaths, requirementsHash, venvPython } from './paths.js';

export { bridgeDir, cacheDir, requirementsHash, venvPython } from './paths.js';

export interface BridgeEnvironment {
  /** The venv's python. */
  python: string;
  venvDir: string;
  requirementsHash: string;
  /** Whether this call built it. */
  created: boolean;
  /** <repo>/python-bridge: PYTHONPATH for the bridge. */
  bridgeDir: string;
}

export interface EnsureOptions {
  /** Progress lines worth showing (e.g. pip's "Collecting onnx"). */
  onProgress?: (line: string) => void;
  /** Every line of detail (attempts, pip's whole output). */
  log?: (line: string) => void;
  signal?: AbortSignal;
  /** Default process.env (SPHANA_CACHE_DIR, SPHANA_PYTHON, PATH …). */
  env?: NodeJS.ProcessEnv;
  /** Default the python-bridge folder next to this package. */
  bridgeDir?: string;
  /** The base Python to build with, when the caller already found one (default: findPython). */
  python?: FoundPython;
}

export interface EnvironmentStatus {
  venvDir: string;
  requirementsHash: string;
  bridgeDir: string;
  cacheDir: string;
  exists: boolean;
  healthy: boolean;
  /** Why it is not healthy. */
  problem?: string;
}

export const MARKER = '.sphana-complete.json';

interface Marker {
  requirementsHash: string;
  basePython: string;
  pythonVersion: string;
  createdAt: string;
}

const PROGRESS = /^(Collecting|Downloading|Processing|Installing collected|Successfully installed|Building|Using cached|Requirement already)/;

/** Where the environment for the current requirements lives, and whether it is usable. */
export async function inspectBridgeEnvironment(options: Pick<EnsureOptions, 'env' | 'bridgeDir'> = {}): Promise<EnvironmentStatus> {
  const env = options.env ?? process.env;
  const dir = options.bridgeDir ?? bridgeDir();
  const hash = requirementsHash(dir);
  const cache = cacheDir(env);
  const venvDir = join(cache, `python-${hash}`);
  const base = { venvDir, requirementsHash: hash, bridgeDir: dir, cacheDir: cache };
  if (!existsSync(venvDir)) return { ...base, exists: false, healthy: false, problem: 'not created yet' };
  let marker: Marker | undefined;
  try {
    marker = JSON.parse(readFileSync(join(venvDir, MARKER), 'utf8')) as Marker;
  } catch {
    return { ...base, exists: true, healthy: false, problem: 'installation marker missing (incomplete install)' };
  }
  if (marker.requirementsHash !== hash) return { ...base, exists: true, healthy: false, problem: 'installation marker is for other requirements' };
  const python = venvPython(venvDir);
  const run = await startProcess(python, ['-c', 'import sys'], { env: childEnv(env), timeoutMs: 30_000 }).done;
  if (run.exitCode !== 0) return { ...base, exists: true, healthy: false, problem: `its python does not run (${run.spawnError ?? `exit status ${run.exitCode ?? run.signal}`})` };
  return { ...base, exists: true, healthy: true };
}

/** The environment for the current requirements: reused when healthy, otherwise (re)built. */
export async function ensureBridgeEnvironment(options: EnsureOptions = {}): Promise<BridgeEnvironment> {
  const env = options.env ?? process.env;
  const log = options.log ?? (() => {});
  const status = await inspectBridgeEnvironment(options);
  const result = (created: boolean): BridgeEnvironment => ({
    python: venvPython(status.venvDir),
    venvDir: status.venvDir,
    requirementsHash: status.requirementsHash,
    created,
    bridgeDir: status.bridgeDir,
  });
  if (status.healthy) return result(false);
  log(`bridge environment ${status.venvDir}: ${status.problem}; building it`);

  mkdirSync(status.cacheDir, { recursive: true });
  cleanLeftovers(status.cacheDir, log);
  const python = options.python ?? await findPython({ env, signal: options.signal, onAttempt: (a) => log(`python ${describeAttempt(a)}`) });
  const suffix = `${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  if (status.exists) {
    const trash = `${status.venvDir}.trash-${suffix}`;
    renameSync(status.venvDir, trash);
    rmSync(trash, { recursive: true, force: true });
  }
  const temp = `${status.venvDir}.tmp-${suffix}`;
  try {
    await build(temp, status.venvDir, python, status, env, options);
    try {
      renameSync(temp, status.venvDir);
    } catch (error) {
      // Another sphana finished the same environment first: use theirs.
      if (!(await inspectBridgeEnvironment(options)).healthy) throw error;
    }
  } finally {
    rmSync(temp, { recursive: true, force: true });
  }
  return result(true);
}

/** The environment for Python children: no PYTHONHOME/PYTHONPATH leaking in from the user's shell. */
export function childEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const copy = { ...env };
  delete copy.PYTHONHOME;
  delete copy.PYTHONPATH;
  delete copy.VIRTUAL_ENV;
  return copy;
}

async function build(temp: string, finalDir: string, python: FoundPython, status: EnvironmentStatus, env: NodeJS.ProcessEnv, options: EnsureOptions): Promise<void> {
  const progress = options.onProgress ?? (() => {});
  progress(`creating a virtual environment with Python ${python.version}`);
  await runStep('python -m venv', python.executable, ['-m', 'venv', temp], env, options);
  const requirements = join(status.bridgeDir, 'requirements.txt');
  const pip = new PipProgress(requirementCount(readFileSync(requirements, 'utf8')));
  progress(`installing ${packages(pip.total)} pinned in requirements.txt with pip`);
  await runStep('pip install', venvPython(temp), ['-m', 'pip', 'install', '--disable-pip-version-check', '-r', requirements], env, options, (line) => {
    const message = pip.line(line);
    if (message) progress(message);
  });
  rewritePaths(temp, finalDir);
  const marker: Marker = { requirementsHash: status.requirementsHash, basePython: python.executable, pythonVersion: python.version, createdAt: new Date().toISOString() };
  writeFileSync(join(temp, MARKER), `${JSON.stringify(marker, null, 2)}\n`);
}

const packages = (n: number) => `${n} package${n === 1 ? '' : 's'}`;

/** The `name==version` lines pip will install (comments and blank lines are not packages). */
export function requirementCount(text: string): number {
  return text.split('\n').map((l) => l.replace(/#.*/, '').trim()).filter((l) => l && !l.startsWith('-')).length;
}

/**
 * pip's output turned into figures a person can follow: "collecting torch 2.13.0 (3/45)" while it
 * resolves and downloads, then "installing 45 packages" (pip prints nothing more until it is done;
 * unpacking torch takes most of the time).
 */
export class PipProgress {
  private readonly seen = new Set<string>();
  private installing?: number;
  constructor(readonly total: number) {}

  private get collected(): number {
    return this.seen.size;
  }

  line(raw: string): string | undefined {
    const line = raw.trim();
    // "Collecting torch==2.13.0 (from -r …)", or for a local wheel "Processing /wheels/torch-2.13.0-cp311-….whl (from -r …)".
    let m = /^Collecting ([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?(?:==([^\s;]+))?/.exec(line)
      ?? /^Processing \S*?([A-Za-z0-9_.]+)-([0-9][^-]*)-[^/\s]*\.whl/.exec(line);
    if (m) {
      this.seen.add(m[1].toLowerCase().replace(/[-_.]+/g, '-'));
      return `collecting ${m[1]}${m[2] ? ` ${m[2]}` : ''} (${Math.min(this.collected, this.total)}/${this.total})`;
    }
    m = /^Downloading (\S+)(?:\s+\(([^)]*)\))?/.exec(line);
    if (m) return `downloading ${m[1].split('/').pop()}${m[2] ? ` (${m[2]})` : ''} (${Math.min(this.collected, this.total)}/${this.total})`;
    m = /^Installing collected packages: (.*)$/.exec(line);
    if (m) {
      const names = m[1].split(',').map((n) => n.trim().toLowerCase());
      this.installing = names.length;
      return `installing ${packages(this.installing)}${names.includes('torch') ? ' (torch takes most of the time)' : ''}`;
    }
    if (/^Successfully installed/.test(line)) return `installed ${packages(this.installing ?? this.total)}`;
    if (PROGRESS.test(line)) return line;
    return undefined;
  }
}

async function runStep(
  label: string, file: string, args: string[], env: NodeJS.ProcessEnv, options: EnsureOptions, onLine?: (line: string) => void,
): Promise<void> {
  const tail = new LineTail(40);
  const each = (line: string) => {
    tail.push(line);
    options.log?.(line);
    onLine?.(line);
  };
  const outcome = await startProcess(file, args, { env: childEnv(env), cwd: options.bridgeDir ?? bridgeDir(), signal: options.signal, onStdoutLine: each, onStderrLine: each }).done;
  if (outcome.stopped === 'abort' || outcome.stopped === 'interrupt') throw new InterruptedError(`interrupted during ${label}`);
  if (outcome.exitCode === 0) return;
  const lines = tail.get();
  const error = [...lines].reverse().find((line) => line.startsWith('ERROR:')) ?? tail.last();
  const status = outcome.spawnError ?? (outcome.exitCode !== null ? `exit status ${outcome.exitCode}` : `killed by ${outcome.signal}`);
  throw new EnvironmentError('E_BRIDGE_ENV', `building the bridge environment failed: ${label} (${status})${error ? `: ${error}` : ''}`, {
    hint: label === 'pip install'
      ? 'check the network or pip configuration (pip config list); the end of pip\'s output is in the details (--json) and in --verbose'
      : 'the chosen Python cannot create virtual environments; install its venv package (e.g. python3-venv) or set SPHANA_PYTHON',
    details: { command: [file, ...args], outputTail: lines },
  });
}
