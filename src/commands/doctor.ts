import { readFileSync, statfsSync, existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { ExitCode, InterruptedError, isSphanaError } from '../errors.js';
import type { Output } from '../cli/output.js';
import { type FoundPython, type PythonAttempt, describeAttempt, findPython } from '../python/find-python.js';
import { type BridgeEnvironment, ensureBridgeEnvironment, inspectBridgeEnvironment } from '../python/environment.js';
import { bridgeVersions } from '../python/entry-points.js';

export interface DoctorOptions {}

interface Problem {
  code: string;
  message: string;
  hint?: string;
}

export interface DoctorReport {
  healthy: boolean;
  node: { version: string };
  onnxruntimeNode: { version: string | null };
  python: { chosen: { command: string; executable: string; version: string } | null; attempts: PythonAttempt[] };
  environment: { dir: string; requirementsHash: string; existed: boolean; created: boolean; healthy: boolean; python: string | null };
  bridge: { python: string | null; packages: Record<string, string>; pinned: Record<string, string> };
  cache: { dir: string; freeBytes: number | null };
  problems: Problem[];
}

const MIN_FREE_BYTES = 1024 ** 3;

function asProblem(error: unknown): Problem {
  if (error instanceof InterruptedError || !isSphanaError(error)) throw error;
  return { code: error.code, message: error.message, ...(error.hint ? { hint: error.hint } : {}) };
}

/** A package name as pip compares them (PEP 503). */
const normalName = (name: string) => name.toLowerCase().replace(/[-_.]+/g, '-');

/** `name==version` pins from python-bridge/requirements.txt, by normalized name. */
function pins(bridgeDir: string): Record<string, string> {
  const text = readFileSync(join(bridgeDir, 'requirements.txt'), 'utf8');
  const entries = [...text.matchAll(/^\s*([A-Za-z0-9_.-]+)\s*==\s*([^\s;#]+)/gm)].map((m) => [normalName(m[1]), m[2]]);
  return Object.fromEntries(entries);
}

function onnxruntimeNodeVersion(): string | null {
  try {
    const path = createRequire(import.meta.url).resolve('onnxruntime-node/package.json');
    return (JSON.parse(readFileSync(path, 'utf8')) as { version: string }).version;
  } catch {
    return null;
  }
}

function freeBytes(dir: string): number | null {
  let probe = dir;
  while (!existsSync(probe) && dirname(probe) !== probe) probe = dirname(probe);
  try {
    const stats = statfsSync(probe);
    return stats.bavail * stats.bsize;
  } catch {
    return null;
  }
}

async function collect(out: Output): Promise<DoctorReport> {
  const problems: Problem[] = [];
  const nodeVersion = process.version;
  if (Number(process.versions.node.split('.')[0]) < 20) {
    problems.push({ code: 'E_NODE_VERSION', message: `Node ${nodeVersion} is too old`, hint: 'install Node.js 20 or newer' });
  }
  const ortNode = onnxruntimeNodeVersion();
  if (!ortNode) problems.push({ code: 'E_NO_ORT_NODE', message: 'onnxruntime-node is not installed', hint: 'run `npm install` in the sphana folder' });

  const attempts: PythonAttempt[] = [];
  let python: FoundPython | undefined;
  try {
    python = await findPython({ onAttempt: (a) => out.debug(`python ${describeAttempt(a)}`) });
    attempts.push(...python.attempts);
  } catch (error) {
    problems.push(asProblem(error));
    attempts.push(...(((error as { details?: { attempts?: PythonAttempt[] } }).details?.attempts) ?? []));
  }

  const status = await inspectBridgeEnvironment();
  let env: BridgeEnvironment | undefined;
  if (status.healthy || python) {
    const step = status.healthy ? undefined : out.step(`Creating the Python bridge environment (${status.problem})`);
    try {
      env = await ensureBridgeEnvironment({ python, onProgress: (line) => step?.update(line), log: (line) => out.debug(line) });
      step?.succeed();
    } catch (error) {
      step?.fail();
      problems.push(asProblem(error));
    }
  }

  const pinned = pins(status.bridgeDir);
  let bridge: DoctorReport['bridge'] = { python: null, packages: {}, pinned };
  if (env) {
    try {
      const versions = await bridgeVersions(env, { timeoutMs: 120_000, onLog: (line) => out.debug(`bridge: ${line}`) });
      bridge = { python: versions.python, packages: versions.packages, pinned };
      // Only what the bridge reports is compared; `==X` accepts X+local (e.g. torch 2.13.0+cpu), as pip does.
      for (const [name, installed] of Object.entries(versions.packages)) {
        const pin = pinned[normalName(name)];
        if (pin === undefined || installed === pin || (!pin.includes('+') && installed.split('+')[0] === pin)) continue;
        problems.push({
          code: 'E_BRIDGE_VERSION',
          message: `${name} ${installed} is installed but ${pin} is pinned`,
          hint: `delete ${env.venvDir} and run \`sphana doctor\` to rebuild the bridge environment`,
        });
      }
    } catch (error) {
      problems.push(asProblem(error));
    }
  }

  const free = freeBytes(status.cacheDir);
  if (free !== null && free < MIN_FREE_BYTES) {
    problems.push({ code: 'E_LOW_DISK', message: `only ${gb(free)} free in ${status.cacheDir}`, hint: 'free some disk space or point SPHANA_CACHE_DIR at a larger disk' });
  }

  return {
    healthy: problems.length === 0,
    node: { version: nodeVersion },
    onnxruntimeNode: { version: ortNode },
    python: { chosen: python ? { command: python.command, executable: python.executable, version: python.version } : null, attempts },
    environment: {
      dir: status.venvDir,
      requirementsHash: status.requirementsHash,
      existed: status.exists,
      created: env?.created ?? false,
      healthy: env !== undefined,
      python: env?.python ?? null,
    },
    bridge,
    cache: { dir: status.cacheDir, freeBytes: free },
    problems,
  };
}

const gb = (bytes: number) => `${(bytes / 1024 ** 3).toFixed(1)} GB`;

export function renderReport(report: DoctorReport): string {
  const rows: Array<[string, string]> = [];
  rows.push(['node', report.node.version]);
  rows.push(['onnxruntime-node', report.onnxruntimeNode.version ?? 'not installed']);
  const chosen = report.python.chosen;
  rows.push(['python', chosen ? `${chosen.version}  ${chosen.executable}` : 'none found']);
  report.python.attempts.forEach((a, i) => rows.push([i === 0 ? '  tried' : '', describeAttempt(a)]));
  const e = report.environment;
  const state = e.healthy ? (e.created ? 'created now' : 'healthy') : e.existed ? 'broken' : 'missing';
  rows.push(['bridge env', `${e.dir}  ${state}`]);
  rows.push(['  requirements', e.requirementsHash]);
  if (report.bridge.python) rows.push(['bridge python', report.bridge.python]);
  for (const [name, version] of Object.entries(report.bridge.packages)) rows.push([`  ${name}`, version]);
  rows.push(['cache', `${report.cache.dir}  ${report.cache.freeBytes === null ? 'free space unknown' : `${gb(report.cache.freeBytes)} free`}`]);
  if (report.problems.length === 0) rows.push(['status', 'healthy']);
  for (const p of report.problems) {
    rows.push(['problem', `${p.code}: ${p.message}`]);
    if (p.hint) rows.push(['  fix', p.hint]);
  }
  const width = Math.max(...rows.map(([label]) => label.length)) + 2;
  return rows.map(([label, value]) => `${label.padEnd(width)}${value}`).join('\n');
}

/** `sphana doctor`: checks Node, onnxruntime-node, Python and the bridge environment (building it if missing). */
export async function run(_args: string[], _options: DoctorOptions, out: Output): Promise<number> {
  const report = await collect(out);
  out.json(JSON.stringify(report));
  out.result(renderReport(report));
  return report.healthy ? ExitCode.ok : ExitCode.environment;
}
