/**
 * The one way sphana starts a process on the Python side (probes, venv, pip, the bridge):
 * detached into its own process group, output delivered line by line as it arrives, and
 * stopped — the whole group, SIGTERM then SIGKILL — on timeout, abort, Ctrl-C or Node's exit.
 */
import { StringDecoder } from 'node:string_decoder';
import { execa } from 'execa';
import { killGroup, onInterrupt, trackGroup } from './process-group.js';

export type StopReason = 'timeout' | 'idle' | 'abort' | 'interrupt' | 'requested';

/** Default cap on one line of output (characters): a longer line is cut and flagged. */
export const MAX_LINE_CHARS = 1 << 20;

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
  /** Stop (reason 'idle') when the process prints no line, on stdout or stderr, for this long. */
  idleTimeoutMs?: number;
  /** Lines longer than this (characters) are delivered cut to it, with `truncated` set; the
   * rest of such a line is dropped without being held (default MAX_LINE_CHARS). */
  maxLineChars?: number;
  signal?: AbortSignal;
  /** 'pipe' keeps the child's stdin open until Node goes away (EOF tells the child its parent died). */
  stdin?: 'ignore' | 'pipe';
  onStdoutLine?: (line: string, truncated: boolean) => void;
  onStderrLine?: (line: string, truncated: boolean) => void;
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

  let idleTimer: NodeJS.Timeout | undefined;
  const active = () => {
    if (options.idleTimeoutMs === undefined || stopped !== null) return;
    if (idleTimer) idleTimer.refresh();
    else idleTimer = setTimeout(() => stop('idle'), options.idleTimeoutMs);
  };
  active();
  const readers: Promise<unknown>[] = [];
  const maxLine = options.maxLineChars ?? MAX_LINE_CHARS;
  const read = (stream: NodeJS.ReadableStream | null, onLine?: (line: string, truncated: boolean) => void) => {
    if (!stream) return;
    readers.push(splitLines(stream, maxLine, (line, truncated) => {
      active();
      onLine?.(line, truncated);
    }));
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
      if (idleTimer) clearTimeout(idleTimer);
      options.signal?.removeEventListener('abort', onAbort);
      removeInterrupt();
      untrack();
    }
  })();

  return { pid, done, stop };
}

/**
 * Splits a stream into lines (\n, a trailing \r dropped) without ever holding more than
 * `max` characters of one line: the rest of an over-long line is discarded up to its newline
 * and the kept part is delivered with `truncated` = true. Resolves when the stream ends.
 */
export function splitLines(stream: NodeJS.ReadableStream, max: number, onLine: (line: string, truncated: boolean) => void): Promise<void> {
  const decoder = new StringDecoder('utf8');
  let parts: string[] = [];
  let length = 0;
  let truncated = false;
  const emit = () => {
    let line = parts.join('');
    if (line.endsWith('\r')) line = line.slice(0, -1);
    parts = [];
    length = 0;
    const cut = truncated;
    truncated = false;
    onLine(line, cut);
  };
  const take = (text: string) => {
    let start = 0;
    for (;;) {
      const nl = text.indexOf('\n', start);
      const piece = nl < 0 ? text.slice(start) : text.slice(start, nl);
      if (!truncated) {
        const room = max - length;
        if (piece.length > room) {
          parts.push(piece.slice(0, room));
          length = max;
          truncated = true;
        } else {
          parts.push(piece);
          length += piece.length;
        }
      }
      if (nl < 0) return;
      emit();
      start = nl + 1;
    }
  };
  return new Promise((resolve) => {
    stream.on('data', (chunk: Buffer | string) => take(typeof chunk === 'string' ? chunk : decoder.write(chunk)));
    let finished = false;
    const finish = () => {
      if (finished) return;
      finished = true;
      take(decoder.end());
      if (length > 0 || truncated) emit();
      resolve();
    };
    stream.once('end', finish);
    stream.once('close', finish);
    stream.once('error', finish);
  });
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
