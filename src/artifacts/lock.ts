import { randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { removeOnExit } from '../cleanup.js';
import { EnvironmentError } from '../errors.js';
import { processAlive } from '../python/process-group.js';

/**
 * One run at a time per artifact folder (export's --out/VERSION, deploy's --to, quantize's
 * output): a PID lock file beside the folder, `.NAME.sphana.lock`, created with O_EXCL. A
 * second run fails at once (E_LOCKED, exit 4) naming the holder's pid, host and command;
 * there is no waiting. A lock is stale, and taken over, when its host is this host and its
 * pid is gone, is a different process (another start time), or was written before the last
 * boot. The lock is removed when the run ends, however it ends (the exit hook).
 */

export interface LockHolder {
  pid: number;
  host: string;
  boot: string | null;
  /** /proc/<pid>/stat start time (clock ticks since boot), when known. */
  start: number | null;
  command: string;
  since: string;
  nonce: string;
}

export function lockPathFor(target: string): string {
  const abs = resolve(target);
  return join(dirname(abs), `.${basename(abs)}.sphana.lock`);
}

function bootId(): string | null {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return null;
  }
}

function startTime(pid: number): number | null {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(text.slice(text.lastIndexOf(')') + 2).split(' ')[19]);
  } catch {
    return null;
  }
}

function readHolder(path: string): LockHolder | null {
  try {
    const h = JSON.parse(readFileSync(path, 'utf8')) as LockHolder;
    return typeof h?.pid === 'number' && typeof h.host === 'string' ? h : null;
  } catch {
    return null;
  }
}

/** Why the holder is gone (the lock is stale), or null when it may still be running. */
export function staleReason(holder: LockHolder | null): string | null {
  if (!holder) return 'unreadable lock file';
  if (holder.host !== hostname()) return null; // another machine (a shared disk): it cannot be checked from here
  const boot = bootId();
  if (holder.boot && boot && holder.boot !== boot) return 'written before this boot';
  if (!processAlive(holder.pid)) return `pid ${holder.pid} is not running`;
  if (holder.start !== null && startTime(holder.pid) !== holder.start) return `pid ${holder.pid} is another process now`;
  return null;
}

/** Takes the lock for `target`, or throws E_LOCKED naming the holder. Returns the release function. */
export function acquireLock(target: string, command: string): () => void {
  const path = lockPathFor(target);
  mkdirSync(dirname(path), { recursive: true });
  const me: LockHolder = {
    pid: process.pid, host: hostname(), boot: bootId(), start: startTime(process.pid), command, since: new Date().toISOString(), nonce: randomBytes(8).toString('hex'),
  };
  for (let attempt = 0; attempt < 3; attempt++) {
    let fd: number;
    try {
      fd = openSync(path, 'wx', 0o644);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const holder = readHolder(path);
      const stale = staleReason(holder);
      if (stale === null) {
        throw new EnvironmentError('E_LOCKED', `${resolve(target)} is in use by pid ${holder!.pid} on ${holder!.host} (${holder!.command}, since ${holder!.since})`, {
          hint: `wait for that run to finish; if it is gone, delete ${path}`,
          details: { lock: path, holder },
        });
      }
      // Move the stale lock aside under a unique name (only one taker wins the rename), then retry.
      const aside = `${path}.stale-${process.pid}-${randomBytes(4).toString('hex')}`;
      try {
        renameSync(path, aside);
        rmSync(aside, { force: true });
      } catch {
        // someone else took it over first; retry
      }
      continue;
    }
    try {
      writeSync(fd, `${JSON.stringify(me)}\n`);
    } finally {
      closeSync(fd);
    }
    const forget = removeOnExit(path);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      forget();
      if (readHolder(path)?.nonce === me.nonce) rmSync(path, { force: true });
    };
  }
  throw new EnvironmentError('E_LOCKED', `${resolve(target)}: could not take the lock ${path}`, { hint: 'another run is taking it over; try again' });
}

/** Runs `work` holding the lock for `target`. */
export async function withLock<T>(target: string, command: string, work: () => Promise<T>): Promise<T> {
  const release = acquireLock(target, command);
  try {
    return await work();
  } finally {
    release();
  }
}
