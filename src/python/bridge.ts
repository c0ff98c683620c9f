/**
 * The client of the Python bridge (python-bridge/PROTOCOL.md) and the only module that
 * starts it: `<venv python> -m sphana_bridge <command> --request '<json>'`, stdout carrying
 * only JSON lines (progress…, then one result or one error), stderr carrying logs.
 */
import { EnvironmentError, type ExitCodeName, InterruptedError, SphanaError, systemErrorFromErrno } from '../errors.js';
import { type BridgeEnvironment, bridgeDir, childEnv, ensureBridgeEnvironment } from './environment.js';
import { LineTail, startProcess } from './run-process.js';

export interface BridgeProgress {
  step: string;
  fraction: number | null;
  message: string;
}

export interface BridgeCallOptions {
  /** The environment to run in; built (or reused) when not given. */
  env?: BridgeEnvironment;
  onProgress?: (progress: BridgeProgress) => void;
  /** Each stderr line of the bridge (its log). */
  onLog?: (line: string) => void;
  /** Total time allowed (default: none). */
  timeoutMs?: number;
  /** Time allowed without a single line on stdout or stderr (default BRIDGE_IDLE_TIMEOUT_MS,
   * or SPHANA_BRIDGE_IDLE_TIMEOUT seconds from the environment). */
  idleTimeoutMs?: number;
  /** Longest stdout line accepted, in characters (default BRIDGE_MAX_LINE_CHARS). */
  maxLineChars?: number;
  signal?: AbortSignal;
  /** Internal (tests): run `[exe, ...args, command, '--request', json]` instead of the venv's python. */
  pythonCommand?: readonly [string, ...string[]];
}

/** A failure the bridge reported with an `error` line; `errorClass` is the Python class. */
export class BridgeError extends SphanaError {
  readonly errorClass: string;
  constructor(command: string, errorClass: string, message: string, details: Record<string, unknown>) {
    const exit = bridgeErrorExit(errorClass, details.exception);
    const code = exit === 'badInput' ? 'E_BRIDGE_INPUT' : exit === 'environment' ? 'E_BRIDGE_IMPORT' : 'E_BRIDGE_FAILED';
    super(code, `${command}: ${errorClass}: ${message}`, exit, {
      hint: exit === 'environment'
        ? 'a Python module is missing: delete the bridge environment folder `sphana doctor` shows to rebuild it, or reinstall sphana if the module is sphana_bridge\'s own'
        : exit === 'badInput' ? 'check the input the message names' : 'rerun with --verbose to see the bridge\'s log',
      details,
    });
    this.errorClass = errorClass;
  }
}

/**
 * How a bridge error class maps to sphana's exit statuses. The bridge reports unexpected
 * Python exceptions as "Internal" with the exception's name in details.exception.
 */
export function bridgeErrorExit(errorClass: string, exception?: unknown): ExitCodeName {
  if (/^(InputError|BadRequest)$/.test(errorClass)) return 'badInput';
  const imports = /^(ImportError|ModuleNotFoundError)$/;
  if (imports.test(errorClass) || (errorClass === 'Internal' && typeof exception === 'string' && imports.test(exception))) return 'environment';
  return 'failed';
}

/** The longest silent stretch of the slowest real step measured (Gemma-2-2B export: ~6 min, bench/results) ×5. */
export const BRIDGE_IDLE_TIMEOUT_MS = 30 * 60_000;
/** The bridge's replies are small JSON objects (a few KiB); 4 MiB is far beyond any of them. */
export const BRIDGE_MAX_LINE_CHARS = 4 << 20;
/** Log lines are kept for error reports; longer ones are cut. */
const MAX_LOG_LINE_CHARS = 64 << 10;

function idleTimeout(options: BridgeCallOptions): number {
  if (options.idleTimeoutMs !== undefined) return options.idleTimeoutMs;
  const fromEnv = Number(process.env.SPHANA_BRIDGE_IDLE_TIMEOUT);
  return Number.isFinite(fromEnv) && fromEnv > 0 ? fromEnv * 1000 : BRIDGE_IDLE_TIMEOUT_MS;
}

const clip = (text: string, max = 300) => (text.length > max ? `${text.slice(0, max)}…` : text);

/** Runs one bridge command and returns its result, checked by `parse` (which throws on a shape mismatch). */
export async function callBridge<T>(command: string, request: unknown, options: BridgeCallOptions & { parse: (data: unknown) => T }): Promise<T> {
  let exe: string;
  let prefix: string[];
  let dir: string;
  if (options.pythonCommand) {
    [exe, ...prefix] = options.pythonCommand;
    dir = options.env?.bridgeDir ?? bridgeDir();
  } else {
    const env = options.env ?? (await ensureBridgeEnvironment({ signal: options.signal }));
    [exe, prefix, dir] = [env.python, ['-m', 'sphana_bridge'], env.bridgeDir];
  }
  const requestJson = JSON.stringify(request);
  const args = [...prefix, command, '--request', requestJson];
  const stderr = new LineTail(40);
  let result: { data: unknown } | undefined;
  let reply: { class: string; message: string; details: Record<string, unknown> } | undefined;
  let violation: { problem: string; output: string } | undefined;

  const protocolError = (problem: string, output: string) =>
    new EnvironmentError('E_BRIDGE_PROTOCOL', `bridge "${command}" broke the protocol: ${problem}${output ? `: ${clip(output, 200)}` : ''}` +
      ` (request ${clip(requestJson, 200)}${stderr.last() ? `; last log line: ${clip(stderr.last(), 200)}` : ''})`, {
      hint: 'this is a bug in the Python bridge or a broken environment; run `sphana doctor`, and rerun with --verbose for its log',
      details: { command: [exe, ...args], request, output, stderrTail: stderr.get() },
    });

  const maxLine = options.maxLineChars ?? BRIDGE_MAX_LINE_CHARS;
  const idleMs = idleTimeout(options);
  const run = startProcess(exe, args, {
    // SPHANA_BRIDGE_WATCH_STDIN: stdin is a pipe we hold open; the bridge exits when it closes (we died).
    env: { ...childEnv(process.env), PYTHONPATH: dir, PYTHONUNBUFFERED: '1', SPHANA_BRIDGE_WATCH_STDIN: '1' },
    cwd: dir,
    stdin: 'pipe',
    timeoutMs: options.timeoutMs,
    idleTimeoutMs: idleMs,
    maxLineChars: maxLine,
    signal: options.signal,
    onStderrLine: (raw, truncated) => {
      const line = truncated || raw.length > MAX_LOG_LINE_CHARS ? `${raw.slice(0, MAX_LOG_LINE_CHARS)}… (line cut)` : raw;
      stderr.push(line);
      options.onLog?.(line);
    },
    onStdoutLine: (line, truncated) => {
      if (violation || !line.trim()) return;
      const problem = (p: string) => {
        violation = { problem: p, output: line.slice(0, 1000) };
        run.stop('requested');
      };
      if (truncated) return problem(`a stdout line longer than ${maxLine} characters`);
      let message: unknown;
      try {
        message = JSON.parse(line);
      } catch {
        return problem('a line on stdout is not JSON');
      }
      const m = message as Record<string, unknown>;
      if (typeof m !== 'object' || m === null) return problem('a stdout line is not a JSON object');
      if (result || reply) return problem(`a "${String(m.type)}" line after the final reply`);
      if (m.type === 'progress') {
        if (typeof m.step !== 'string' || !(m.fraction === null || typeof m.fraction === 'number') || typeof m.message !== 'string') {
          return problem('malformed progress line');
        }
        options.onProgress?.({ step: m.step, fraction: m.fraction as number | null, message: m.message });
      } else if (m.type === 'result' && 'data' in m) {
        result = { data: m.data };
      } else if (m.type === 'error' && typeof m.class === 'string' && typeof m.message === 'string') {
        const details = typeof m.details === 'object' && m.details !== null ? (m.details as Record<string, unknown>) : {};
        reply = { class: m.class, message: m.message, details };
      } else {
        return problem('unknown or malformed message');
      }
    },
  });
  const outcome = await run.done;

  if (outcome.stopped === 'abort' || outcome.stopped === 'interrupt') throw new InterruptedError(`interrupted: bridge "${command}" stopped`);
  if (outcome.stopped === 'timeout' || outcome.stopped === 'idle') {
    const what = outcome.stopped === 'idle'
      ? `printed nothing for ${(idleMs / 1000).toFixed(1)} s and was stopped`
      : `did not finish within ${((options.timeoutMs ?? 0) / 1000).toFixed(1)} s`;
    throw new EnvironmentError('E_BRIDGE_TIMEOUT', `bridge "${command}" ${what}`, {
      hint: 'the Python side hung or the machine is too slow; rerun with --verbose to see its log (SPHANA_BRIDGE_IDLE_TIMEOUT=<seconds> raises the idle limit)',
      details: { command: [exe, ...args], request, stderrTail: stderr.get() },
    });
  }
  if (violation) throw protocolError(violation.problem, violation.output);
  if (outcome.spawnError) {
    throw new EnvironmentError('E_BRIDGE_ENV', `could not start the bridge for "${command}": ${exe} (${outcome.spawnError})`, {
      hint: 'the bridge environment is broken; run `sphana doctor` to rebuild it',
      details: { command: [exe, ...args] },
    });
  }
  const status = outcome.exitCode !== null ? `exit status ${outcome.exitCode}` : `killed by ${outcome.signal}`;
  if (reply && outcome.exitCode === 1) {
    // A full disk or a permission problem inside the bridge is the machine's, not a bug (exit 4).
    throw systemErrorFromErrno(reply.details.errno, reply.details.path, command)
      ?? new BridgeError(command, reply.class, reply.message, { ...reply.details, request, stderrTail: stderr.get() });
  }
  if (reply) throw protocolError(`an error reply with ${status} (expected exit status 1)`, `${reply.class}: ${reply.message}`);
  if (outcome.exitCode !== 0) throw protocolError(`${status} without an error reply`, '');
  if (!result) throw protocolError('exit status 0 without a result line', '');
  try {
    return options.parse(result.data);
  } catch (error) {
    if (error instanceof SphanaError) throw error;
    const why = error instanceof Error ? error.message : String(error);
    throw protocolError(`unexpected result shape (${why})`, JSON.stringify(result.data));
  }
}
