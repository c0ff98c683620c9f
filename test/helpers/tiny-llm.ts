import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { ROOT, testPython } from './paths.js';

/** Builds a tiny Llama-like ONNX decoder with a KV cache (fixtures/tiny_llm.py). */
export function buildTinyLlm(out: string, args: string[] = []): string {
  const r = spawnSync(testPython(), [join(ROOT, 'fixtures/tiny_llm.py'), out, ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`tiny_llm.py failed: ${r.stderr}`);
  return out;
}
