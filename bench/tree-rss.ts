import { spawn } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';

/** RSS of a process and all its descendants, summed, from /proc. */
export function treeRss(root: number): number {
  const parent = new Map<number, number>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      parent.set(Number(name), Number(fields[1]));
    } catch { /* gone */ }
  }
  const inTree = (pid: number): boolean => {
    for (let p = pid, i = 0; p > 1 && i < 64; p = parent.get(p) ?? 0, i++) if (p === root) return true;
    return false;
  };
  let total = 0;
  for (const pid of parent.keys()) {
    if (!inTree(pid)) continue;
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (m) total += Number(m[1]) * 1024;
    } catch { /* gone */ }
  }
  return total;
}

export interface PhaseFigures { phase: string; seconds: number; peakRssBytes: number }
export interface TracedRun { exitCode: number; stdout: string; stderr: string; seconds: number; peakRssBytes: number; phases: PhaseFigures[] }

/**
 * Runs a sphana command (plain output) and samples its process tree's RSS every 200 ms; the phase is
 * the step whose `> label` line was printed last on stderr.
 */
export function traceRun(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env, timeoutMs = 0): Promise<TracedRun> {
  return new Promise((resolve) => {
    const started = performance.now();
    const child = spawn(cmd, args, { env: { ...env, CI: 'true' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const phases: PhaseFigures[] = [];
    let current: PhaseFigures = { phase: 'start', seconds: 0, peakRssBytes: 0 };
    let phaseStart = performance.now();
    phases.push(current);
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      for (const line of d.toString().split('\n')) {
        if (!line.startsWith('> ')) continue;
        current.seconds = (performance.now() - phaseStart) / 1000;
        phaseStart = performance.now();
        current = { phase: line.slice(2).trim(), seconds: 0, peakRssBytes: 0 };
        phases.push(current);
      }
    });
    // A command that cannot start (ENOENT, EACCES) ends like one that failed, with the reason on stderr.
    child.on('error', (e) => { stderr += `\nerror E_SPAWN: ${e.message}\n`; });
    const killer = timeoutMs > 0 ? setTimeout(() => { stderr += `\nerror E_TIMEOUT: killed after ${timeoutMs / 1000} s\n`; child.kill('SIGTERM'); }, timeoutMs) : undefined;
    const timer = setInterval(() => {
      const rss = treeRss(child.pid!);
      current.peakRssBytes = Math.max(current.peakRssBytes, rss);
    }, 200);
    child.on('close', (code) => {
      clearInterval(timer);
      if (killer) clearTimeout(killer);
      current.seconds = (performance.now() - phaseStart) / 1000;
      resolve({
        exitCode: code ?? -1, stdout, stderr, seconds: (performance.now() - started) / 1000,
        peakRssBytes: Math.max(...phases.map((p) => p.peakRssBytes)), phases: phases.filter((p) => p.phase !== 'start' || p.seconds > 0.5),
      });
    });
  });
}
