import { spawnSync } from 'node:child_process';
import { BIN, ROOT } from './paths.js';

export interface CliResult { exitCode: number; stdout: string; stderr: string }

/** Runs the real `bin/sphana.js` as a user would (piped, so no colours or spinners). */
export function sphana(args: string[], env: NodeJS.ProcessEnv = {}): CliResult {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    cwd: ROOT,
    encoding: 'utf8',
    env: { ...process.env, ...env },
    maxBuffer: 1 << 26,
  });
  return { exitCode: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

export const ANSI = /\u001b\[/;
