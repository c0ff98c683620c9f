import { lstatSync, realpathSync } from 'node:fs';
import { dirname, isAbsolute, relative, resolve, sep } from 'node:path';
import { InputError } from '../errors.js';

/**
 * The one validator for every path sphana reads from a file (manifest `files`, `models` and
 * their external data, tokenizer files, hub file names, hub revisions): a path read from a
 * file is untrusted. A safe path is relative, has no `..` segment, no NUL byte, is not
 * absolute (POSIX, drive letter, UNC or backslash-rooted) and, following symlinks, stays
 * inside its folder.
 */

/** Why `path` is lexically unsafe, or undefined when it is a plain relative path. */
export function unsafePathReason(path: unknown): string | undefined {
  if (typeof path !== 'string') return 'not a string';
  if (path === '') return 'empty path';
  if (path.includes('\0')) return 'contains a NUL byte';
  if (path.length > 4096) return 'longer than 4096 characters';
  if (isAbsolute(path) || /^[A-Za-z]:/.test(path) || path.startsWith('\\')) return 'absolute path';
  const parts = path.split(/[\\/]/);
  if (parts.includes('..')) return "contains a '..' segment";
  return undefined;
}

/** True when `child` (absolute) is `root` or below it. */
export function isInside(root: string, child: string): boolean {
  const rel = relative(root, child);
  return rel === '' || (!rel.startsWith(`..${sep}`) && rel !== '..' && !isAbsolute(rel));
}

/** The real path of the nearest existing ancestor of `path` (itself if it exists), re-joined with the rest. */
function realOrNearest(path: string): string {
  let head = path;
  const rest: string[] = [];
  for (;;) {
    try {
      lstatSync(head);
      return resolve(realpathSync(head), ...rest);
    } catch {
      const up = dirname(head);
      if (up === head) return path;
      rest.unshift(head.slice(up.length + (up.endsWith(sep) ? 0 : 1)));
      head = up;
    }
  }
}

/** Why `path` (relative to `root`) is unsafe, including a symlink that leaves `root`; undefined when safe. */
export function unsafePathInReason(root: string, path: unknown): string | undefined {
  const lexical = unsafePathReason(path);
  if (lexical) return lexical;
  const base = realOrNearest(resolve(root));
  const real = realOrNearest(resolve(root, path as string));
  if (!isInside(base, real)) return 'resolves outside its folder (symlink)';
  return undefined;
}

export interface SafePathOptions {
  /** What the path is, for the message: "manifest file", "hub file name" … */
  what: string;
  /** The error code (default E_UNSAFE_PATH). */
  code?: string;
  hint?: string;
}

/** The absolute path of `path` inside `root`, or an InputError (exit 3) naming why it is unsafe. Nothing is opened. */
export function safePathIn(root: string, path: unknown, options: SafePathOptions): string {
  const reason = unsafePathInReason(root, path);
  if (reason) throw unsafePathError(path, reason, options);
  return resolve(root, path as string);
}

export function unsafePathError(path: unknown, reason: string, options: SafePathOptions): InputError {
  return new InputError(options.code ?? 'E_UNSAFE_PATH', `${options.what} ${JSON.stringify(path)} is unsafe: ${reason}`, {
    hint: options.hint ?? 'every path read from a file must be relative and stay inside its folder; the file is damaged or hostile',
  });
}

/** A hub revision sha: exactly 40 lowercase hex characters. */
export const COMMIT_SHA = /^[0-9a-f]{40}$/;

/** Why a `--revision` (branch, tag or commit) is unsafe to use as a cache path and a URL part, or undefined. */
export function unsafeRevisionReason(revision: string): string | undefined {
  if (revision.length > 256) return 'longer than 256 characters';
  if (!/^[A-Za-z0-9._\-/]+$/.test(revision)) return 'only letters, digits and . _ - / are allowed';
  const reason = unsafePathReason(revision);
  if (reason) return reason;
  if (revision.split('/').some((p) => p === '' || p === '.')) return "has an empty or '.' segment";
  return undefined;
}
