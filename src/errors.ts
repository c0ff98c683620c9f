/**
 * Typed errors: every failure sphana expects carries a stable code, a one-line message,
 * a hint for the user and the exit status it maps to. The CLI's single top-level catch
 * turns them into output; anything else is reported as a bug.
 */

/** Exit statuses, documented in README.md. */
export const ExitCode = {
  ok: 0,
  /** The job ran but a gate failed (verification, parity, a reported problem). */
  failed: 1,
  /** The command line was wrong. */
  usage: 2,
  /** An input (file, model, name) is missing, corrupt or unsupported. */
  badInput: 3,
  /** The environment is not fit (no Python, broken venv, no disk). */
  environment: 4,
  /** Interrupted by the user (Ctrl-C). */
  interrupted: 130,
  /** An unexpected error: a bug in sphana. */
  internal: 70,
} as const;
export type ExitCodeName = keyof typeof ExitCode;

export interface ErrorOptions {
  hint?: string;
  cause?: unknown;
  details?: Record<string, unknown>;
}

export class SphanaError extends Error {
  readonly code: string;
  readonly exitCode: number;
  readonly hint?: string;
  readonly details?: Record<string, unknown>;

  constructor(code: string, message: string, exit: ExitCodeName, options: ErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.exitCode = ExitCode[exit];
    this.hint = options.hint;
    this.details = options.details;
  }

  toJSON(): { code: string; message: string; hint?: string; details?: Record<string, unknown> } {
    return {
      code: this.code,
      message: this.message,
      ...(this.hint ? { hint: this.hint } : {}),
      ...(this.details ? { details: this.details } : {}),
    };
  }
}

/** A file or model the user gave us is missing, malformed or unsupported. */
export class InputError extends SphanaError {
  constructor(code: string, message: string, options?: ErrorOptions) {
    super(code, message, 'badInput', options);
  }
}

/** The command line itself is wrong. */
export class UsageError extends SphanaError {
  constructor(message: string, options?: ErrorOptions) {
    super('E_USAGE', message, 'usage', options);
  }
}

/** Python, the bridge environment, disk or another tool is not usable. */
export class EnvironmentError extends SphanaError {
  constructor(code: string, message: string, options?: ErrorOptions) {
    super(code, message, 'environment', options);
  }
}

/** The job ran and a gate (verification, parity, a check) failed. */
export class JobFailedError extends SphanaError {
  constructor(code: string, message: string, options?: ErrorOptions) {
    super(code, message, 'failed', options);
  }
}

export class InterruptedError extends SphanaError {
  constructor(message = 'interrupted') {
    super('E_INTERRUPTED', message, 'interrupted');
  }
}

export function isSphanaError(error: unknown): error is SphanaError {
  return error instanceof SphanaError;
}

/** The environment errors a file system reports: the disk, a quota, a permission, a read-only mount. */
const SYSTEM_ERRORS: Record<string, { code: string; what: string; hint: (folder: string) => string }> = {
  ENOSPC: { code: 'E_DISK_FULL', what: 'no space left on the device', hint: (f) => `free space on the disk holding ${f}, or write elsewhere` },
  EDQUOT: { code: 'E_DISK_QUOTA', what: 'disk quota exceeded', hint: (f) => `free space within your quota on ${f}, or write elsewhere` },
  EACCES: { code: 'E_PERMISSION', what: 'permission denied', hint: (f) => `check the permissions of ${f}` },
  EPERM: { code: 'E_PERMISSION', what: 'operation not permitted', hint: (f) => `check the permissions of ${f}` },
  EROFS: { code: 'E_READ_ONLY', what: 'read-only file system', hint: (f) => `${f} is on a read-only file system; write elsewhere` },
};

/**
 * An fs error caused by the environment (ENOSPC, EDQUOT, EACCES, EPERM, EROFS) as an
 * EnvironmentError (exit 4) whose message and hint name the folder; undefined for anything else.
 */
export function fromSystemError(error: unknown): EnvironmentError | undefined {
  if (isSphanaError(error) || !(error instanceof Error)) return undefined;
  const e = error as NodeJS.ErrnoException & { dest?: string };
  const known = e.code ? SYSTEM_ERRORS[e.code] : undefined;
  if (!known) return undefined;
  const path = e.dest ?? e.path;
  const folder = path ? folderOf(path) : 'the output folder';
  return new EnvironmentError(known.code, `${known.what} (${e.code}${e.syscall ? ` in ${e.syscall}` : ''}${path ? `: ${path}` : ''})`, {
    hint: known.hint(folder), cause: error, details: { errno: e.code, path: path ?? null, folder },
  });
}

/**
 * An environment error (exit 4) for an errno name another process reported (the Python bridge's
 * `details.errno`), naming the folder; undefined when the name is not one of the system errors.
 */
export function systemErrorFromErrno(errno: unknown, path: unknown, context: string): EnvironmentError | undefined {
  if (typeof errno !== 'string' || !Object.hasOwn(SYSTEM_ERRORS, errno)) return undefined;
  const known = SYSTEM_ERRORS[errno];
  const where = typeof path === 'string' && path ? path : undefined;
  const folder = where ? folderOf(where) : 'the output folder';
  return new EnvironmentError(known.code, `${context}: ${known.what} (${errno}${where ? `: ${where}` : ''})`, {
    hint: known.hint(folder), details: { errno, path: where ?? null, folder },
  });
}

/** The folder a user knows: the path's parent, above any hidden staging or temporary folder sphana made. */
function folderOf(path: string): string {
  let dir = path;
  do {
    const i = dir.lastIndexOf('/');
    dir = i > 0 ? dir.slice(0, i) : '/';
  } while (dir !== '/' && /\/\.[^/]*sphana-[^/]*$/.test(dir));
  return dir;
}
