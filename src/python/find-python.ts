/**
 * Finds a Python able to host the bridge environment: version ≥ 3.11 (numpy 2.4, pinned, needs it) with the `venv`
 * (and `ensurepip`) modules. SPHANA_PYTHON, when set, is the only candidate; otherwise
 * python3.13, python3.12, python3.11, python3 and python are tried on PATH, in that order.
 */
import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, isAbsolute, join, resolve } from 'node:path';
import { EnvironmentError, InterruptedError } from '../errors.js';
import { startProcess } from './run-process.js';

export const MIN_PYTHON: readonly [number, number] = [3, 11];
export const PATH_CANDIDATES = ['python3.13', 'python3.12', 'python3.11', 'python3', 'python'] as const;

export interface PythonAttempt {
  /** What was tried: a command name, or `SPHANA_PYTHON=<value>`. */
  candidate: string;
  /** Where it resolved to, when it was found. */
  path?: string;
  /** sys.executable, when it ran. */
  executable?: string;
  /** Its version, when it ran. */
  version?: string;
  ok: boolean;
  /** Why it was rejected: "not found", "not runnable (…)", "too old (3.8.18)", "no venv module". */
  reason?: string;
}

export interface FoundPython {
  /** The executable to run (the resolved candidate path). */
  command: string;
  /** sys.executable as the interpreter reports it. */
  executable: string;
  version: string;
  attempts: PythonAttempt[];
}

export interface FindPythonOptions {
  env?: NodeJS.ProcessEnv;
  /** Called after each attempt, accepted or not. */
  onAttempt?: (attempt: PythonAttempt) => void;
  signal?: AbortSignal;
}

/** Runs under any Python (2 included) and prints one line the probe parses. */
const PROBE = [
  'import sys',
  'v = sys.version_info',
  'ok = "no"',
  'try:',
  '    import importlib.util as u',
  '    ok = "yes" if u.find_spec("venv") and u.find_spec("ensurepip") else "no"',
  'except Exception:',
  '    pass',
  'sys.stdout.write("sphana-probe %d.%d.%d %s %s\\n" % (v[0], v[1], v[2], ok, sys.executable))',
].join('\n');
const PROBE_LINE = /^sphana-probe (\d+)\.(\d+)\.(\d+) (yes|no) (.*)$/;

export function describeAttempt(attempt: PythonAttempt): string {
  if (attempt.ok) return `${attempt.candidate}: ${attempt.version} ok`;
  return `${attempt.candidate}: ${attempt.reason}`;
}

function isExecutableFile(path: string): boolean {
  try {
    if (!statSync(path).isFile()) return false;
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Resolves a command name on PATH (or a path containing a slash) to an executable file. */
export function whichSync(command: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (command.includes('/') || isAbsolute(command)) return isExecutableFile(command) ? resolve(command) : undefined;
  for (const dir of (env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    const full = join(dir, command);
    if (isExecutableFile(full)) return full;
  }
  return undefined;
}

async function probe(candidate: string, path: string, env: NodeJS.ProcessEnv, signal?: AbortSignal): Promise<PythonAttempt> {
  let line: string | undefined;
  let firstError = '';
  const run = startProcess(path, ['-c', PROBE], {
    env,
    signal,
    timeoutMs: 30_000,
    onStdoutLine: (text) => {
      if (PROBE_LINE.test(text)) line = text;
    },
    onStderrLine: (text) => {
      if (!firstError && text.trim()) firstError = text.trim();
    },
  });
  const outcome = await run.done;
  if (outcome.stopped === 'abort' || outcome.stopped === 'interrupt') throw new InterruptedError();
  const match = line ? PROBE_LINE.exec(line) : null;
  if (outcome.exitCode !== 0 || !match) {
    const why = outcome.spawnError ?? (outcome.stopped === 'timeout' ? 'timed out' : firstError || `exit status ${outcome.exitCode ?? outcome.signal}`);
    return { candidate, path, ok: false, reason: `not runnable (${why})` };
  }
  const [major, minor] = [Number(match[1]), Number(match[2])];
  const version = `${match[1]}.${match[2]}.${match[3]}`;
  if (major < MIN_PYTHON[0] || (major === MIN_PYTHON[0] && minor < MIN_PYTHON[1])) {
    return { candidate, path, version, ok: false, reason: `too old (${version})` };
  }
  if (match[4] !== 'yes') return { candidate, path, version, ok: false, reason: 'no venv module' };
  return { candidate, path, executable: match[5] || path, version, ok: true };
}

/** Finds the first suitable Python, or throws E_NO_PYTHON listing every attempt. */
export async function findPython(options: FindPythonOptions = {}): Promise<FoundPython> {
  const env = options.env ?? process.env;
  const override = env.SPHANA_PYTHON;
  const candidates: Array<{ label: string; command: string }> =
    override !== undefined && override !== ''
      ? [{ label: `SPHANA_PYTHON=${override}`, command: override }]
      : PATH_CANDIDATES.map((name) => ({ label: name, command: name }));
  const attempts: PythonAttempt[] = [];
  for (const { label, command } of candidates) {
    const path = whichSync(command, env);
    const attempt = path ? await probe(label, path, env, options.signal) : { candidate: label, ok: false, reason: 'not found' };
    attempts.push(attempt);
    options.onAttempt?.(attempt);
    if (attempt.ok && path) return { command: path, executable: attempt.executable ?? path, version: attempt.version ?? '', attempts };
  }
  const min = MIN_PYTHON.join('.');
  throw new EnvironmentError('E_NO_PYTHON', `no Python ≥ ${min} with venv found: ${attempts.map(describeAttempt).join('; ')}`, {
    hint: override
      ? `SPHANA_PYTHON must name a Python ≥ ${min} with the venv module; fix or unset it`
      : `install Python ≥ ${min} with venv (e.g. \`apt-get install python3 python3-venv\`), or set SPHANA_PYTHON to its path`,
    details: { attempts },
  });
}
