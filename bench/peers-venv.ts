import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * A bench-only venv for a peer tool (never the product's bridge environment): built from
 * bench/peers/requirements-NAME.txt under the bench cache, keyed by the file's hash, under a temporary
 * name renamed into place once pip succeeded. After the install it must hold exactly the CPU torch
 * 2.13.0 and no CUDA package, or it is refused (a GPU torch would pull GBs).
 */
export function ensurePeerVenv(cache: string, name: string, log: (line: string) => void): string {
  const requirements = join(import.meta.dirname, '../../bench/peers', `requirements-${name}.txt`);
  const hash = createHash('sha256').update(readFileSync(requirements)).digest('hex').slice(0, 12);
  const dir = join(cache, `peers-${name}-${hash}`);
  const python = join(dir, 'bin/python');
  if (existsSync(join(dir, '.complete'))) return python;
  const temp = `${dir}.partial`;
  rmSync(temp, { recursive: true, force: true });
  log(`building the ${name} venv (${requirements})`);
  const base = process.env.SPHANA_BENCH_BASE_PYTHON ?? 'python3';
  const run = (cmd: string, args: string[]) => {
    const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 1 << 26 });
    if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${(r.stderr || r.stdout).slice(-2000)}`);
    return r.stdout;
  };
  run(base, ['-m', 'venv', temp]);
  run(join(temp, 'bin/python'), ['-m', 'pip', 'install', '--disable-pip-version-check', '-q', '-r', requirements]);
  const check = run(join(temp, 'bin/python'), ['-c', [
    'import importlib.metadata as m, json',
    'names = sorted(d.metadata["Name"] for d in m.distributions())',
    'print(json.dumps({"torch": m.version("torch"), "cuda": [n for n in names if n.lower().startswith(("nvidia", "triton"))]}))',
  ].join('\n')]);
  const { torch, cuda } = JSON.parse(check.trim()) as { torch: string; cuda: string[] };
  if (torch !== '2.13.0+cpu' || cuda.length) {
    rmSync(temp, { recursive: true, force: true });
    throw new Error(`the ${name} venv got torch ${torch} and CUDA packages [${cuda.join(', ')}]; refusing it (pin torch==2.13.0 from the local CPU wheel)`);
  }
  writeFileSync(join(temp, 'freeze.txt'), run(join(temp, 'bin/python'), ['-m', 'pip', 'freeze']));
  writeFileSync(join(temp, '.complete'), `${new Date().toISOString()}\n`);
  rmSync(dir, { recursive: true, force: true });
  renameSync(temp, dir);
  return python;
}
