import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { test } from 'node:test';
import { FAMILIES } from '../../src/models/index.js';
import { ROOT } from '../helpers/paths.js';

/**
 * Architecture knowledge lives in src/models/ only (one file per family): the rest of src/ and the
 * Python bridge receive facts and never branch on which architecture a model is.
 */

/** Names an architecture switch would test for: every family's id, class names and model_types, and some it may gain. */
const NAMES = new Set([
  ...FAMILIES.flatMap((f) => [f.id, ...f.architectures, ...f.presets.map((p) => String(p.config.model_type ?? ''))]),
  'gemma3', 'phi', 'phi4', 'olmo', 'olmo2', 'granite', 'mixtral', 'falcon', 'gpt2', 'gpt_neox', 'starcoder2', 'cohere', 'deepseek_v3', 'internlm2', 'exaone', 'smollm3',
].filter(Boolean));

/** A comparison of a model's type, family or class with a string literal (either language). */
const COMPARISON = /\b(?:model_type|modelType|family\.id|architectures\[0\]|architecture)\b['"\])]*\s*(?:===|!==|==|!=|\bnot in\b|\bin\b)\s*[([{]?\s*['"]|\.(?:startswith|startsWith|includes)\(\s*['"]/;

/** The places in `text` that test for an architecture: a comparison as above, or a quoted architecture name. */
export function architectureSwitches(text: string): string[] {
  const found: string[] = [];
  text.split('\n').forEach((line, i) => {
    const code = line.replace(/^\s*(?:\/\/|\*|#).*$/, '').replace(/\s(?:\/\/|#)\s.*$/, '');
    const names = [...code.matchAll(/(['"])([A-Za-z0-9_.-]+)\1/g)].map((m) => m[2]).filter((s) => NAMES.has(s));
    const compares = COMPARISON.test(code) && /model_type|modelType|family|architecture/.test(code);
    if (names.length || compares) found.push(`${i + 1}: ${line.trim()}`);
  });
  return found;
}

function files(dir: string, ending: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? files(p, ending) : p.endsWith(ending) ? [p] : [];
  });
}

test('the scan finds an architecture switch in either language', () => {
  assert.ok(NAMES.has('gemma2') && NAMES.has('Gemma3ForCausalLM') && NAMES.has('gemma3_text'));
  for (const bad of [
    "    if config.model_type == 'gemma2':",
    '    if cfg.model_type in ("qwen2", "qwen3"):',
    "  if (family.id === 'gemma2') scale = 1;",
    "  if (config.architectures[0] !== 'LlamaForCausalLM') throw err;",
    '    if model_type.startswith("gemma"):',
    "  const offset = ['gemma', 'gemma2'].includes(type) ? 1 : 0;",
    '    SUPPORTED = ["llama", "qwen2"]',
  ]) assert.equal(architectureSwitches(bad).length, 1, bad);
  for (const fine of [
    '    expected = model_class(facts["architecture"]).config_class.model_type',
    '    if config.get("model_type") not in (None, expected):',
    "  const modelType = config.model_type ?? family.id;",
    '    # Gemma 2 soft-caps its logits (the facts say so)',
  ]) assert.deepEqual(architectureSwitches(fine), [], fine);
});

test('no architecture switch outside src/models/: not in src/, not in the Python bridge', () => {
  const scanned = [
    ...files(join(ROOT, 'src'), '.ts').filter((f) => !relative(ROOT, f).startsWith(join('src', 'models'))),
    ...files(join(ROOT, 'python-bridge', 'sphana_bridge'), '.py'),
  ];
  assert.ok(scanned.length > 80, `${scanned.length} files`);
  const hits = scanned.flatMap((f) => architectureSwitches(readFileSync(f, 'utf8')).map((h) => `${relative(ROOT, f)}:${h}`));
  assert.deepEqual(hits, []);
});
