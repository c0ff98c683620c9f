/**
 * Process-group bookkeeping for the Python children sphana starts. Every child runs
 * detached, as the leader of its own process group, so that killing `-pid` also reaches
 * whatever it started (pip's build backends, the bridge's workers). Groups still running
 * when Node exits are killed synchronously from the 'exit' hook, so no Python process
 * outlives sphana (except when Node itself is SIGKILLed, which no hook can see).
 */
import { readdirSync, readFileSync } from 'node:fs';

const tracked = new Set<number>();
let exitHookInstalled = false;

function signalGroup(pgid: number, signal: NodeJS.Signals | 0): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch {
    return false; // ESRCH: the group is empty; EPERM cannot happen for our own children.
  }
}

/** Ensures the group is killed if Node exits while it is still running; returns the untrack function. */
export function trackGroup(pgid: number): () => void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on('exit', () => {
      for (const id of tracked) signalGroup(id, 'SIGKILL');
    });
  }
  tracked.add(pgid);
  return () => tracked.delete(pgid);
}

/** Reads "state" and "pgrp" from /proc/<pid>/stat (the command name may contain spaces). */
function procStat(pid: string): { state: string; pgrp: number } | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return { state: fields[0], pgrp: Number(fields[2]) };
  } catch {
    return undefined;
  }
}

/**
 * Whether any live (non-zombie) process is left in the group. Zombies are ignored: in a
 * container whose PID 1 does not reap, a killed orphan stays a zombie forever.
 */
export function groupAlive(pgid: number): boolean {
  if (!signalGroup(pgid, 0)) return false;
  if (process.platform !== 'linux') return true;
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return true;
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = procStat(entry);
    if (stat && stat.pgrp === pgid && stat.state !== 'Z' && stat.state !== 'X') return true;
  }
  return false;
}

/** Whether one process is alive and not a zombie. */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  const stat = process.platform === 'linux' ? procStat(String(pid)) : undefined;
  return stat === undefined ? process.platform !== 'linux' : stat.state !== 'Z' && stat.state !== 'X';
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** SIGTERM to the whole group, then SIGKILL if anything in it is still alive after `graceMs`. */
export async function killGroup(pgid: number, graceMs = 3000): Promise<void> {
  if (!signalGroup(pgid, 'SIGTERM')) return;
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline) {
    await sleep(50);
    if (!groupAlive(pgid)) return;
  }
  signalGroup(pgid, 'SIGKILL');
}

/**
 * Calls `handler` on Ctrl-C (SIGINT), SIGTERM or SIGHUP while installed; returns the
 * uninstaller. While a handler is installed Node does not die of these signals by itself,
 * so the caller must stop its child and end with an InterruptedError.
 */
export function onInterrupt(handler: (signal: NodeJS.Signals) => void): () => void {
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const signal of signals) process.on(signal, handler);
  return () => {
    for (const signal of signals) process.removeListener(signal, handler);
  };
}
