import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { MB } from './measure.js';
import { type TracedRun, traceRun } from './tree-rss.js';
import { benchVerify } from './verify.js';

const GB = (bytes: number) => `${(bytes / 1e9).toFixed(2)} GB`;

function phaseRows(run: TracedRun, modelBytes: number): string[] {
  const rows = ['| step | wall | peak RSS (process tree) | × fp32 model |', '|---|---|---|---|'];
  for (const p of run.phases) rows.push(`| ${p.phase} | ${p.seconds.toFixed(1)} s | ${MB(p.peakRssBytes)} | ${(p.peakRssBytes / modelBytes).toFixed(2)} |`);
  rows.push(`| **total** | **${run.seconds.toFixed(1)} s** | **${MB(run.peakRssBytes)}** | **${(run.peakRssBytes / modelBytes).toFixed(2)}** |`);
  return rows;
}

function bytesOf(...paths: string[]): number {
  return paths.filter(existsSync).reduce((n, p) => n + statSync(p).size, 0);
}

interface Speed { prefillTokensPerSecond: number; decodeTokensPerSecond: number; peakRssBytes: number }

function decodeSpeed(model: string, ids?: number[]): Speed {
  const r = spawnSync(process.execPath, [join(import.meta.dirname, 'decode-speed.js'), model, '2', ...(ids ? [JSON.stringify(ids), '32'] : [])], { encoding: 'utf8', maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`decode-speed failed on ${model}: ${r.stderr.slice(-1500)}`);
  return JSON.parse(r.stdout) as Speed;
}

/** The same loop in Python onnxruntime (bench/ort_decode.py), same model, ids and threads. */
function pythonSpeed(model: string, ids: number[]): Speed {
  const python = process.env.SPHANA_BENCH_PYTHON ?? 'python3';
  const r = spawnSync(python, [join(import.meta.dirname, '../../bench/ort_decode.py'), model, '--threads', '2', '--steps', '32', '--ids', JSON.stringify(ids),
    '--past-key', 'past_key_values.%d.key', '--past-value', 'past_key_values.%d.value', '--present-key', 'present.%d.key', '--present-value', 'present.%d.value'], { encoding: 'utf8', maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`ort_decode.py failed on ${model}: ${r.stderr.slice(-1500)}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as Speed;
}

/** The whole pipeline on the full-size Llama-3.2-1B architecture (random weights), then each quantize strategy. */
export async function benchExport(cache: string, bin: string): Promise<string[]> {
  const out = join(cache, 'export-llama');
  const run = await traceRun(process.execPath, [bin, 'export', 'llama-3.2-1b', '--synthetic', 'full', '--out', out, '--force', '--json']);
  if (run.exitCode !== 0) throw new Error(`export failed: ${run.stderr.slice(-3000)}`);
  const dir = join(out, '0.1.0');
  const fp32 = join(dir, 'onnx/llm_generator.onnx');
  const fp32Bytes = bytesOf(fp32, `${fp32}.data`);
  const int8Bytes = bytesOf(join(dir, 'onnx/llm_generator.int8.onnx'), join(dir, 'onnx/llm_generator.int8.onnx.data'));
  const rows = [
    '## `sphana export llama-3.2-1b --synthetic full` (the whole pipeline, verify included)', '',
    `fp32 model ${GB(fp32Bytes)}, INT8 model ${GB(int8Bytes)} (${((100 * int8Bytes) / fp32Bytes).toFixed(1)} % of fp32)`, '',
    ...phaseRows(run, fp32Bytes), '',
    '## `sphana quantize` on that fp32 model, one strategy at a time', '',
    '| strategy / engine | result | wall | peak RSS | × fp32 | output | decode tok/s | prefill tok/s |', '|---|---|---|---|---|---|---|---|',
  ];
  const base = decodeSpeed(fp32);
  rows.push(`| fp32 (reference) | - | - | - | - | ${GB(fp32Bytes)} | ${base.decodeTokensPerSecond.toFixed(2)} | ${base.prefillTokensPerSecond.toFixed(1)} |`);
  const qdir = join(cache, 'quantize-llama');
  mkdirSync(qdir, { recursive: true });
  for (const [strategy, engine] of [['auto', 'streaming'], ['direct', 'streaming'], ['external-data', 'streaming'], ['embedding-split', 'streaming'], ['external-data', 'ort']] as const) {
    const target = join(qdir, `${strategy}-${engine}.int8.onnx`);
    const q = await traceRun(process.execPath, [bin, 'quantize', fp32, '-o', target, '--strategy', strategy, '--engine', engine, '--force', '--json']);
    let result: string;
    let speed = '-';
    let prefill = '-';
    if (q.exitCode === 0) {
      const report = JSON.parse(q.stdout) as { strategy: string };
      result = `ok (${report.strategy})`;
      const s = decodeSpeed(target);
      speed = s.decodeTokensPerSecond.toFixed(2);
      prefill = s.prefillTokensPerSecond.toFixed(1);
    } else {
      result = `failed: ${(/error (E_\w+): (.{0,160})/.exec(q.stderr)?.slice(1).join(' ') ?? q.stderr.slice(-160)).replace(/\|/g, '/')}`;
    }
    rows.push(`| ${strategy} / ${engine} | ${result} | ${q.seconds.toFixed(1)} s | ${MB(q.peakRssBytes)} | ${(q.peakRssBytes / fp32Bytes).toFixed(2)} | ${q.exitCode === 0 ? GB(bytesOf(target, `${target}.data`)) : '-'} | ${speed} | ${prefill} |`);
    rmSync(target, { force: true });
    rmSync(`${target}.data`, { force: true });
  }
  rows.push('', '## Decode loop: onnxruntime-node (sphana\'s DecoderRunner) against Python onnxruntime', '',
    'The same loop in each, in a process that does nothing else: prefill 64 tokens from an empty cache (median of 3), then 32 greedy decode steps feeding the presents back; 2 threads.', '',
    '| model | prefill tok/s (node) | decode tok/s (node) | prefill tok/s (Python) | decode tok/s (Python) | node / Python decode |', '|---|---|---|---|---|---|');
  const ids = Array.from({ length: 64 }, (_, i) => (i * 7919 + 13) % 128256);
  for (const [label, model] of [['fp32', fp32], ['int8', join(dir, 'onnx/llm_generator.int8.onnx')]] as const) {
    const node = decodeSpeed(model, ids);
    const py = pythonSpeed(model, ids);
    rows.push(`| ${label} | ${node.prefillTokensPerSecond.toFixed(1)} | ${node.decodeTokensPerSecond.toFixed(2)} | ${py.prefillTokensPerSecond.toFixed(1)} | ${py.decodeTokensPerSecond.toFixed(2)} | ${(node.decodeTokensPerSecond / py.decodeTokensPerSecond).toFixed(3)} |`);
  }
  rows.push('', '## `sphana verify` on the artifact', '');
  const v = await traceRun(process.execPath, [bin, 'verify', dir, '--json']);
  rows.push(`verify: exit ${v.exitCode}, ${v.seconds.toFixed(1)} s, peak RSS ${MB(v.peakRssBytes)}`, '');
  rows.push(...(await benchVerify(dir)));
  return rows;
}

/** Gemma-2-2B at full size: completes, or says which step ran out of memory. */
export async function benchGemma2(cache: string, bin: string): Promise<string[]> {
  return benchFullPreset(cache, bin, 'gemma-2-2b', 2.61e9, 'export-gemma2');
}

/** Gemma-3-1B at full size (issue 11: each step's wall time and peak RSS). */
export async function benchGemma3(cache: string, bin: string): Promise<string[]> {
  return benchFullPreset(cache, bin, 'gemma-3-1b', 1.0e9, 'export-gemma3');
}

async function benchFullPreset(cache: string, bin: string, preset: string, parameters: number, folder: string): Promise<string[]> {
  const out = join(cache, folder);
  const run = await traceRun(process.execPath, [bin, 'export', preset, '--synthetic', 'full', '--out', out, '--force', '--json']);
  const dir = join(out, '0.1.0');
  const fp32 = join(dir, 'onnx/llm_generator.onnx');
  const fp32Bytes = bytesOf(fp32, `${fp32}.data`) || parameters * 4;
  const rows = [`## \`sphana export ${preset} --synthetic full\``, '', `exit ${run.exitCode}; fp32 model ${GB(fp32Bytes)}`, ''];
  if (run.exitCode !== 0) rows.push(`failed: ${(/error (E_\w+: .{0,300})/.exec(run.stderr)?.[1] ?? run.stderr.slice(-300)).replace(/\n/g, ' ')}`, '');
  rows.push(...phaseRows(run, fp32Bytes));
  return rows;
}
