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
