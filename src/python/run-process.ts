/**
 * The one way sphana starts a process on the Python side (probes, venv, pip, the bridge):
 * detached into its own process group, output delivered line by line as it arrives, and
 * stopped — the whole group, SIGTERM then SIGKILL — on timeout, abort, Ctrl-C or Node's exit.
 */
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { execa } from 'execa';
import { killGroup, onInterrupt, trackGroup } from './process-group.js';

export type StopReason = 'timeout' | 'abort' | 'interrupt' | 'requested';

export interface ProcessOutcome {
  /** The exit status, or null when the process died of a signal or never started. */
  exitCode: number | null;
  /** The signal that ended it, if any. */
  signal: string | null;
  /** Why sphana stopped it, or null when it ended on its own. */
  stopped: StopReason | null;
  /** Set when the process could not be started at all (e.g. "ENOENT"). */
  spawnError?: string;
}

export interface StartOptions {
  /** The complete environment of the child (default: process.env). */
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  timeoutMs?: number;
  signal?: AbortSignal;
  /** 'pipe' keeps the child's stdin open until Node goes away (EOF tells the child its parent died). */
  stdin?: 'ignore' | 'pipe';
  onStdoutLine?: (line: string) => void;
  onStderrLine?: (line: string) => void;
}

export interface ProcessHandle {
  readonly pid: number | undefined;
  /** Settles (never rejects) once the process has ended and all its output was delivered. */
  readonly done: Promise<ProcessOutcome>;
  /** Kills the whole process group (SIGTERM, then SIGKILL after 3 s). */
  stop(reason?: StopReason): void;
}

/** The hub token goes only to the hub: never to pip, the probes or the bridge. */
export const HUB_SECRETS = ['HF_TOKEN', 'HUGGING_FACE_HUB_TOKEN', 'HF_HUB_TOKEN', 'HF_ENDPOINT'] as const;

export function withoutHubSecrets(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const copy = { ...env };
  for (const name of HUB_SECRETS) delete copy[name];
  return copy;
}

export function startProcess(file: string, args: readonly string[], options: StartOptions = {}): ProcessHandle {
  if (options.signal?.aborted) {
    return { pid: undefined, done: Promise.resolve({ exitCode: null, signal: null, stopped: 'abort' }), stop: () => {} };
  }
  const child = execa(file, args, {
    env: withoutHubSecrets(options.env ?? process.env),
    extendEnv: false,
    cwd: options.cwd,
    detached: true,
    cleanup: false,
    buffer: false,
    reject: false,
    stdin: options.stdin ?? 'ignore',
    stripFinalNewline: false,
    windowsHide: true,
  });
  const pid = child.pid;
  const untrack = pid === undefined ? () => {} : trackGroup(pid);
  let stopped: StopReason | null = null;
  let killing: Promise<void> | undefined;

  const stop = (reason: StopReason = 'requested') => {
    if (stopped !== null || pid === undefined) return;
    stopped = reason;
    killing = killGroup(pid);
  };

  const readers: Promise<unknown>[] = [];
  const read = (stream: NodeJS.ReadableStream | null, onLine?: (line: string) => void) => {
    if (!stream) return;
    const lines = createInterface({ input: stream, crlfDelay: Infinity });
    lines.on('line', (line) => onLine?.(line));
    readers.push(once(lines, 'close'));
  };
  read(child.stdout, options.onStdoutLine);
  read(child.stderr, options.onStderrLine);

  const timer = options.timeoutMs !== undefined ? setTimeout(() => stop('timeout'), options.timeoutMs) : undefined;
  const onAbort = () => stop('abort');
  options.signal?.addEventListener('abort', onAbort, { once: true });
  const removeInterrupt = onInterrupt(() => stop('interrupt'));

  // When the leader exits, anything it left behind in its group is stopped too; that also
  // closes the pipes a straggler would otherwise hold open.
  child.once('exit', () => {
    if (pid !== undefined && killing === undefined) killing = killGroup(pid);
  });

  const done = (async (): Promise<ProcessOutcome> => {
    try {
      const result = await child;
      await Promise.all(readers);
      await killing;
      const spawnError = pid === undefined ? String((result as { code?: unknown }).code ?? 'spawn failed') : undefined;
      return {
        exitCode: typeof result.exitCode === 'number' ? result.exitCode : null,
        signal: result.signal ?? null,
        stopped,
        ...(spawnError ? { spawnError } : {}),
      };
    } finally {
      if (timer) clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
      removeInterrupt();
      untrack();
    }
  })();

  return { pid, done, stop };
}

/** Keeps the last `size` lines pushed into it. */
export class LineTail {
  private readonly lines: string[] = [];
  constructor(private readonly size = 40) {}
  push(line: string): void {
    this.lines.push(line);
    if (this.lines.length > this.size) this.lines.shift();
  }
  get(): string[] {
    return [...this.lines];
  }
  /** The last non-blank line, or ''. */
  last(): string {
    for (let i = this.lines.length - 1; i >= 0; i -= 1) if (this.lines[i].trim()) return this.lines[i].trim();
    return '';
  }
}
