import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { FAMILIES, PRESETS, factsFor, familyFor, parameterCount, tinyVariant } from '../../src/models/index.js';
import type { HfConfig } from '../../src/models/index.js';
import { ROOT, testPython } from '../helpers/paths.js';

/** The families' facts: what the bridge receives, checked against transformers' own models. */

const TINY_CONFIGS = join(ROOT, 'python-bridge/tests/tiny_configs.json');

test('the bridge tests\' tiny configs carry the facts the family files resolve for them', () => {
  const entries = JSON.parse(readFileSync(TINY_CONFIGS, 'utf8')) as Record<string, { why: string; config: HfConfig; architecture: unknown }>;
  if (process.env.SPHANA_WRITE_TINY_CONFIGS === '1') {
    for (const e of Object.values(entries)) e.architecture = factsFor(e.config);
    writeFileSync(TINY_CONFIGS, `${JSON.stringify(entries, null, 2)}\n`);
  }
  for (const [name, e] of Object.entries(entries)) {
    assert.deepEqual(e.architecture, factsFor(e.config), `${name}: stale facts in ${TINY_CONFIGS}; rewrite them with SPHANA_WRITE_TINY_CONFIGS=1 node --test dist/test/models/facts.test.js`);
  }
  // Every family has a tiny bridge config.
  const families = new Set(Object.values(entries).map((e) => familyFor(e.config).id));
  assert.deepEqual([...families].sort(), FAMILIES.map((f) => f.id).sort());
});

/** Each preset's config built by transformers on the meta device, checked by the bridge's own check_model. */
function transformersCheck(configs: Array<{ name: string; config: HfConfig }>): Array<{ name: string; ok: boolean; parameters: number; error?: string }> {
  const script = `
import json, sys, torch
from sphana_bridge.architecture import check_model, model_class
from sphana_bridge.synthetic import build_config
out = []
for item in json.loads(sys.stdin.read()):
    cfg = build_config(item["config"], item["facts"])
    with torch.device("meta"):
        model = model_class(item["facts"]["architecture"])._from_config(cfg, dtype=torch.float32)
    n = sum(p.numel() for p in model.parameters())
    try:
        check_model(cfg, n, item["facts"])
        out.append({"name": item["name"], "ok": True, "parameters": n})
    except Exception as e:
        out.append({"name": item["name"], "ok": False, "parameters": n, "error": str(e)})
print(json.dumps(out))
`;
  const input = JSON.stringify(configs.map((c) => ({ name: c.name, config: c.config, facts: factsFor(c.config) })));
  const r = spawnSync(testPython(), ['-c', script], { input, encoding: 'utf8', env: { ...process.env, PYTHONPATH: join(ROOT, 'python-bridge') }, maxBuffer: 1 << 24 });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as ReturnType<typeof transformersCheck>;
}

test('every preset\'s facts agree with transformers\' model at full size and at the tiny size', () => {
  const configs = PRESETS.flatMap((p) => [{ name: p.name, config: p.config }, { name: `${p.name} (tiny)`, config: tinyVariant(p, 512).config }]);
  for (const r of transformersCheck(configs)) {
    assert.equal(r.ok, true, `${r.name}: ${r.error}`);
    assert.equal(r.parameters, parameterCount(configs.find((c) => c.name === r.name)!.config), r.name);
  }
});

test('parameter counts are the published ones', () => {
  // The models' safetensors totals as the Hugging Face hub reports them (tied tables once).
  const published: Record<string, number> = {
    'llama-3.2-1b': 1_235_814_400, 'smollm2-135m': 134_515_008, 'gemma-2b': 2_506_172_416, 'gemma-2-2b': 2_614_341_888,
    'qwen2.5-0.5b': 494_032_768,
    // keras-hub's gemma3_270m, gemma3_1b and phi3_mini_4k_instruct_en presets (llama.cpp's n_params agrees for the 270m).
    'gemma-3-270m': 268_098_176, 'gemma-3-1b': 999_885_952, 'phi-3-mini-4k': 3_821_079_552,
    // Qwen3-0.6B's model card: 0.6B parameters, 0.44B of them outside the (tied) embedding.
    'qwen3-0.6b': 596_049_920,
    'mistral-7b': 7_241_732_096,
  };
  const q3 = PRESETS.find((p) => p.name === 'qwen3-0.6b')!.config;
  assert.ok(Math.abs(parameterCount(q3) - 151936 * 1024 - 0.44e9) < 0.005e9, 'non-embedding 0.44B');
  for (const [name, n] of Object.entries(published)) assert.equal(parameterCount(PRESETS.find((p) => p.name === name)!.config), n, name);
});

test('the facts state each family\'s traits', () => {
  const facts = (name: string) => factsFor(PRESETS.find((p) => p.name === name)!.config);
  assert.equal(facts('gemma-2b').normOffset, 1);
  assert.equal(facts('gemma-2b').embeddingScale, Math.sqrt(2048));
  assert.equal(facts('gemma-2b').activation, 'gelu_pytorch_tanh', 'the released config\'s legacy "gelu" is the tanh approximation');
  assert.equal(facts('llama-3.2-1b').normOffset, 0);
  assert.equal(facts('llama-3.2-1b').embeddingScale, null);
  assert.equal(facts('qwen2.5-0.5b').attentionBias, 'qkv');
  assert.equal(facts('qwen2.5-0.5b').slidingWindow, null, 'use_sliding_window is false');
  const g2 = facts('gemma-2-2b');
  assert.equal(g2.layerNorms, 4);
  assert.equal(g2.slidingWindow, 4096);
  assert.equal(g2.layerTypes.length, 26);
  assert.deepEqual(g2.layerTypes.slice(0, 3), ['sliding_attention', 'full_attention', 'sliding_attention']);
  assert.deepEqual([g2.attnLogitSoftcapping, g2.finalLogitSoftcapping], [50, 30]);
  for (const name of ['gemma-3-270m', 'gemma-3-1b']) {
    const g3 = facts(name);
    assert.deepEqual([g3.normOffset, g3.qkNorm, g3.layerNorms, g3.slidingWindow, g3.headDim, g3.tiedEmbeddings], [1, true, 4, 512, 256, true], name);
    assert.equal(g3.layerTypes.filter((t) => t === 'full_attention').length, g3.layerTypes.length / 6 | 0, `${name}: five sliding layers to one global`);
    assert.deepEqual(g3.layerTypes.slice(0, 6), [...Array(5).fill('sliding_attention'), 'full_attention']);
    assert.deepEqual(g3.rope, { sliding_attention: { theta: 10_000, scaling: null }, full_attention: { theta: 1_000_000, scaling: null } });
  }
  const phi = facts('phi-3-mini-4k');
  assert.deepEqual([phi.fusedQkv, phi.fusedGateUp, phi.slidingWindow, phi.tiedEmbeddings, phi.normOffset], [true, true, 2047, false, 0]);
  assert.ok(phi.layerTypes.every((t) => t === 'sliding_attention'));
  const q3 = facts('qwen3-0.6b');
  assert.deepEqual([q3.qkNorm, q3.attentionBias, q3.headDim, q3.tiedEmbeddings, q3.slidingWindow], [true, 'none', 128, true, null]);
  // Without head_dim in config.json, Qwen3 still has 128 (transformers' default), not hidden / heads.
  const { head_dim: _h, ...noHeadDim } = PRESETS.find((p) => p.name === 'qwen3-0.6b')!.config;
  assert.equal(factsFor(noHeadDim).headDim, 128);
  const mi = facts('mistral-7b');
  assert.equal(mi.slidingWindow, 4096);
  assert.deepEqual(new Set(mi.layerTypes), new Set(['sliding_attention']), 'every layer slides');
  assert.equal(mi.layerTypes.length, 32);
  const { sliding_window: _w, ...noWindow } = PRESETS.find((p) => p.name === 'mistral-7b')!.config;
  assert.equal(factsFor(noWindow).slidingWindow, 4096, 'MistralConfig\'s default window');
  assert.equal(factsFor({ ...noWindow, sliding_window: null }).slidingWindow, null, 'null turns it off');
});
