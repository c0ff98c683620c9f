import { spawnSync } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Precision } from '../src/manifest/schema.js';
import { openArtifact } from '../src/verify/artifact.js';
import { SPEED_PROMPT_TOKENS } from '../src/verify/index.js';
import { syntheticIds } from '../src/verify/prompts.js';
import { modelVocab } from '../src/verify/tokenizer-check.js';
import type { SpeedFigures } from '../src/verify/run-precision.js';
import { MB } from './measure.js';

/**
 * Speed of `sphana verify` per precision of an artifact folder (prefill and decode tokens/s, peak
 * RSS), each precision in its own process so the peaks do not mix, next to Python onnxruntime
 * running the same prefill + decode loop (bench/ort_decode.py) on the same model with the same
 * thread count. Env: SPHANA_BENCH_THREADS (default: all cores), SPHANA_BENCH_TOKENS (decode
 * steps, default 32), SPHANA_BENCH_PYTHON (a Python with onnxruntime).
 */
export async function benchVerify(dir: string): Promise<string[]> {
  const artifact = openArtifact(dir);
  const threads = Number(process.env.SPHANA_BENCH_THREADS) || availableParallelism();
  const steps = Number(process.env.SPHANA_BENCH_TOKENS) || 32;
  const python = process.env.SPHANA_BENCH_PYTHON ?? process.env.SPHANA_PYTHON ?? 'python3';
  const script = join(import.meta.dirname, '../../bench/ort_decode.py');
  const library = pathToFileURL(join(import.meta.dirname, '../src/verify/index.js')).href;
  const ids = syntheticIds(SPEED_PROMPT_TOKENS, modelVocab(artifact).vocab, 7);
  const kv = artifact.manifest.kvCache;
  const rows = [
    `${artifact.manifest.name}: ${threads} threads, prefill ${SPEED_PROMPT_TOKENS} tokens, ${steps} decode steps`,
    '',
    '| precision | prefill tok/s (sphana) | decode tok/s (sphana) | peak RSS (sphana) | prefill tok/s (Python ort) | decode tok/s (Python ort) | peak RSS (Python ort) |',
    '|---|---|---|---|---|---|---|',
  ];
  for (const model of artifact.manifest.models) {
    const precision: Precision = model.precision;
    const code = `const { verifyArtifacts } = await import(${JSON.stringify(library)});
const r = await verifyArtifacts(${JSON.stringify(dir)}, { only: ['speed'], precisions: [${JSON.stringify(precision)}], tokens: ${steps}, threads: ${threads} });
process.stdout.write(JSON.stringify(r.checks[0].figures[${JSON.stringify(precision)}]));`;
    const node = spawnSync(process.execPath, ['--input-type=module', '-e', code], { encoding: 'utf8', maxBuffer: 1 << 24 });
    if (node.status !== 0) throw new Error(`sphana speed run failed for ${precision}: ${node.stderr.slice(-2000)}`);
    const ours = JSON.parse(node.stdout) as SpeedFigures & { error?: string };
    if (ours.error) throw new Error(`${precision}: ${ours.error}`);
    const py = spawnSync(python, [script, artifact.abs(model.path), '--threads', String(threads), '--steps', String(steps), '--ids', JSON.stringify(ids),
      '--past-key', kv.pastKeyTemplate, '--past-value', kv.pastValueTemplate, '--present-key', kv.presentKeyTemplate, '--present-value', kv.presentValueTemplate], { encoding: 'utf8', maxBuffer: 1 << 24 });
    if (py.status !== 0) throw new Error(`ort_decode.py failed for ${precision}: ${py.stderr.slice(-2000)}`);
    const theirs = JSON.parse(py.stdout.trim().split('\n').pop()!) as SpeedFigures;
    rows.push(`| ${precision} | ${ours.prefillTokensPerSecond.toFixed(0)} | ${ours.decodeTokensPerSecond.toFixed(1)} | ${MB(ours.peakRssBytes)} | ${theirs.prefillTokensPerSecond.toFixed(0)} | ${theirs.decodeTokensPerSecond.toFixed(1)} | ${MB(theirs.peakRssBytes)} |`);
  }
  return rows;
}
