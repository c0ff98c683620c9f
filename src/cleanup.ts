import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { processAlive } from './python/process-group.js';

/**
 * Paths to remove if the process ends before the work that owns them finishes (Ctrl-C,
 * SIGTERM, SIGHUP, a crash): staging folders and temporary files never outlive the command.
 */
const pending = new Set<string>();
const sweeps = new Set<string>();
let installed = false;

/** Staging entries a child process (the Python bridge) makes beside an output: `.<name>.sphana-…`. */
export const STAGING_ENTRY = /^\..*\.sphana-|^\.sphana-/;

/** A name part unique to this run: pid and random bytes (two runs, or two calls, never share it). */
export function runTag(): string {
  // Web Crypto's global: node:crypto is loaded when a tag is made, not by every command's start.
  return `${process.pid}-${Buffer.from(globalThis.crypto.getRandomValues(new Uint8Array(4))).toString('hex')}`;
}

/** Removes the staging entries left in `dir` (by a run that was killed). */
export function sweepStaging(dir: string): void {
  let names: string[] = [];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) if (STAGING_ENTRY.test(name)) rmSync(join(dir, name), { recursive: true, force: true });
}

/**
 * Removes the entries of `dir` named `<prefix><pid>-…` whose pid is no longer running: the
 * staging a killed run left (a live run's staging, for another target, is kept).
 */
export function sweepDeadStaging(dir: string, prefix: string): string[] {
  let names: string[] = [];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const pid = Number(/^(\d+)-/.exec(name.slice(prefix.length))?.[1]);
    if (pid === process.pid || (Number.isInteger(pid) && pid > 0 && processAlive(pid))) continue;
    rmSync(join(dir, name), { recursive: true, force: true });
    removed.push(name);
  }
  return removed;
}

function removeAll(): void {
  for (const path of pending) rmSync(path, { recursive: true, force: true });
  for (const dir of sweeps) sweepStaging(dir);
  pending.clear();
}

function install(): void {
  if (!installed) {
    process.once('exit', removeAll);
    installed = true;
  }
}

/** Sweeps `dir`'s staging entries at exit unless the returned function is called first. */
export function sweepOnExit(dir: string): () => void {
  install();
  sweeps.add(dir);
  return () => sweeps.delete(dir);
}

/** Registers `path` for removal at exit; call the returned function once the path is safe. */
export function removeOnExit(path: string): () => void {
  install();
  pending.add(path);
  return () => pending.delete(path);
}

/** Exit statuses of the signals sphana handles: 128 + the signal number. */
export const SIGNAL_EXIT: Record<'SIGINT' | 'SIGTERM' | 'SIGHUP', number> = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 };

/**
 * SIGINT, SIGTERM and SIGHUP end the run the same way: `report` prints the one-line error,
 * the exit hook removes staging and temporary files (and kills Python children), and the
 * process exits 130, 143 or 129. Returns the uninstaller.
 */
export function exitOnSignals(report: (signal: keyof typeof SIGNAL_EXIT) => void): () => void {
  install();
  const handlers = (Object.keys(SIGNAL_EXIT) as Array<keyof typeof SIGNAL_EXIT>).map((signal) => {
    const handler = () => {
      try {
        report(signal);
      } finally {
        process.exit(SIGNAL_EXIT[signal]);
      }
    };
    process.once(signal, handler);
    return [signal, handler] as const;
  });
  return () => {
    for (const [signal, handler] of handlers) process.removeListener(signal, handler);
  };
}
