import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Manifest } from '../../src/manifest/schema.js';
import { findPreset, headDimOf, kvHeadsOf, tinyVariant } from '../../src/models/index.js';
import { inspectFile } from '../../src/onnx/summary.js';
import { sphana } from '../helpers/cli.js';

/**
 * Gemma 3 text and Phi-3 (published parameter counts and facts: test/models/facts.test.ts): the tiny
 * variants keep the traits, and a tiny export passes the parity gate past the sliding window,
 * INT8 and INT4 quantization and verify.
 */

test('tiny Gemma 3 keeps two sliding layers and a global one, the window inside the parity prompt, 1 kv head x 32', () => {
  for (const name of ['gemma-3-270m', 'gemma-3-1b']) {
    const { config } = tinyVariant(findPreset(name), 512);
    const types = config.layer_types as string[];
    assert.equal(types.length, config.num_hidden_layers);
    assert.ok(types.filter((t) => t === 'sliding_attention').length >= 2 && types.includes('full_attention'), types.join());
    assert.ok((config.sliding_window as number) < 12 + 4, 'the default parity prompt (12) + 4 steps passes the window');
    assert.equal(kvHeadsOf(config), 1);
    assert.notEqual(headDimOf(config) * (config.num_attention_heads as number), config.hidden_size);
    assert.equal(config.rope_theta, 1_000_000);
    assert.equal(config.rope_local_base_freq, 10_000);
  }
  const phi = tinyVariant(findPreset('phi-3-mini-4k'), 512).config;
  assert.ok((phi.sliding_window as number) < 12 + 4);
  assert.equal(kvHeadsOf(phi), phi.num_attention_heads);
});

let out: string;
const manifests = new Map<string, Manifest>();
const NAMES = ['gemma-3-270m', 'phi-3-mini-4k'];
const PRECISIONS = ['int8', 'int4'] as const;

before(() => {
  out = mkdtempSync(join(tmpdir(), 'sphana-g3p3-'));
  for (const name of NAMES) {
    // INT8 first, then INT4 into the same folder (the export step is reused, quantize and verify rerun).
    for (const precision of PRECISIONS) {
      const r = sphana(['export', name, '--synthetic', 'tiny', '--precision', precision, '--out', join(out, name), '--json']);
      assert.equal(r.exitCode, 0, `${name} ${precision}: ${r.stderr}`);
      manifests.set(`${name} ${precision}`, JSON.parse(readFileSync(join(out, name, '0.1.0', 'manifest.json'), 'utf8')) as Manifest);
    }
  }
});
after(() => rmSync(out, { recursive: true, force: true }));

for (const name of NAMES) for (const precision of PRECISIONS) {
  test(`${name}: tiny export passes parity past the window, ${precision} and verify; KV sizes from the graph`, () => {
    const m = manifests.get(`${name} ${precision}`)!;
    const dir = join(out, name, '0.1.0', 'onnx');
    const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    const parity = m.parity as { positions: number; top1Agreement: number; maxAbsDiff: number; cachedVsFullMaxAbsDiff: number; atol: number };
    assert.ok(parity.positions > (config.sliding_window as number), `${parity.positions} positions do not pass the window`);
    assert.equal(m.architecture.slidingWindow, config.sliding_window);
    assert.equal(parity.top1Agreement, 1);
    assert.ok(parity.maxAbsDiff <= 1e-4, String(parity.maxAbsDiff)); // fp32 both sides; measured 6.2e-6 / 4.8e-6
    assert.ok(parity.cachedVsFullMaxAbsDiff <= 1e-4, String(parity.cachedVsFullMaxAbsDiff));
    // KV sizes: what the graphs state, equal to the config's (1 x 32 for Gemma 3, 4 x 16 for Phi-3).
    for (const file of ['llm_generator.onnx', `llm_generator.${precision}.onnx`]) {
      const past = inspectFile(join(dir, file)).inputs.find((i) => i.name === 'past_key_values.0.key')!;
      assert.deepEqual(past.shape, ['batch_size', kvHeadsOf(config), 'past_sequence_length', headDimOf(config)], file);
    }
    assert.deepEqual([m.kvCache.numKvHeads, m.kvCache.headDim], [kvHeadsOf(config), headDimOf(config)]);
    assert.equal(inspectFile(join(dir, `llm_generator.${precision}.onnx`)).quantization.floatConstantMatMuls.length, 0);
    assert.equal(m.quantization?.attempts.at(-1)?.ok, true);
    const verification = m.verification as { ok: boolean; quality: Record<string, { passed: boolean; nearTieTop1: number; meanCosine: number; meanKl: number }> };
    assert.equal(verification.ok, true);
    assert.equal(verification.quality[precision].passed, true);
    assert.equal(m.quantization?.precision, precision);
  });
}
