import { spawnSync } from 'node:child_process';
import { cpus, totalmem } from 'node:os';

/** Wall seconds and peak RSS of a command, measured by /usr/bin/time. */
export interface Measurement { seconds: number; peakRssBytes: number; exitCode: number; stdout: string }

export function measure(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): Measurement {
  const r = spawnSync('/usr/bin/time', ['-f', '__time %e %M', cmd, ...args], { encoding: 'utf8', env, maxBuffer: 1 << 28 });
  const line = r.stderr.split('\n').reverse().find((l) => l.startsWith('__time '));
  if (!line) throw new Error(`no timing for ${cmd} ${args.join(' ')}: ${r.stderr.slice(-2000)}`);
  const [, seconds, kb] = line.split(' ');
  return { seconds: Number(seconds), peakRssBytes: Number(kb) * 1024, exitCode: r.status ?? -1, stdout: r.stdout };
}

/** Median over `runs` repetitions (after one warm-up). */
export function median(cmd: string, args: string[], runs = 5, env?: NodeJS.ProcessEnv): Measurement {
  measure(cmd, args, env);
  const all = Array.from({ length: runs }, () => measure(cmd, args, env)).sort((a, b) => a.seconds - b.seconds);
  return { ...all[Math.floor(runs / 2)], peakRssBytes: Math.max(...all.map((m) => m.peakRssBytes)) };
}

export function machine(): string {
  return `${cpus().length} cores (${cpus()[0]?.model ?? '?'}), ${(totalmem() / 2 ** 30).toFixed(1)} GiB RAM, Node ${process.version}`;
}

export const MB = (bytes: number) => `${(bytes / 2 ** 20).toFixed(0)} MB`;
