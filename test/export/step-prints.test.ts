import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { type ArchitectureFacts, factsFor, familyFor, findPreset } from '../../src/models/index.js';
import { type PrintInputs, exportFacts, exportInputDir, stepPrints } from '../../src/pipeline/step-prints.js';

const root = mkdtempSync(join(tmpdir(), 'sphana-step-prints-'));
after(() => rmSync(root, { recursive: true, force: true }));

const gemma2 = findPreset('gemma-2-2b').config;
const base = (architecture: ArchitectureFacts | null): PrintInputs => ({
  identity: { preset: 'gemma-2-2b', synthetic: 'tiny', seed: 0 }, exporter: 'dynamo', optimize: 'none', precision: 'int8', strategy: 'auto', architecture,
});

test('one changed architecture fact changes the export fingerprint and every one after it, not the weights\'', () => {
  const facts = factsFor(gemma2);
  const before = stepPrints(base(facts));
  assert.equal(stepPrints(base(structuredClone(facts))).export, before.export, 'the same facts give the same key');
  const changed: Array<[string, ArchitectureFacts]> = [
    ['normOffset', { ...facts, normOffset: facts.normOffset === 1 ? 0 : 1 }],
    ['slidingWindow', { ...facts, slidingWindow: (facts.slidingWindow ?? 0) + 1 }],
    ['layerTypes', { ...facts, layerTypes: facts.layerTypes.map(() => 'full_attention' as const) }],
    ['rope', { ...facts, rope: { ...facts.rope, full_attention: { ...facts.rope.full_attention!, theta: facts.rope.full_attention!.theta * 2 } } }],
    ['finalLogitSoftcapping', { ...facts, finalLogitSoftcapping: null }],
  ];
  const seen = new Set([before.export]);
  for (const [name, other] of changed) {
    const after = stepPrints(base(other));
    assert.equal(after.weights, before.weights, name);
    for (const step of ['export', 'assemble', 'quantize'] as const) assert.notEqual(after[step], before[step], `${name}: ${step}`);
    assert.notEqual(after.verify(['a']), before.verify(['a']), name);
    seen.add(after.export);
  }
  assert.equal(seen.size, changed.length + 1, 'each change gives its own key');
  assert.notEqual(stepPrints(base(null)).export, before.export, 'no facts yet (weights not made) is not a match either');
});

test('the optimize mode is part of the export fingerprint (the fusions run inside the export step)', () => {
  const facts = factsFor(gemma2);
  const none = stepPrints(base(facts));
  const ort = stepPrints({ ...base(facts), optimize: 'ort' });
  assert.equal(ort.weights, none.weights);
  for (const step of ['export', 'assemble', 'quantize'] as const) assert.notEqual(ort[step], none[step], step);
});

test('exportFacts reads the folder the export reads: an edit of the family file reaches the key', () => {
  const dir = join(root, 'hf');
  rmSync(dir, { recursive: true, force: true });
  assert.equal(exportFacts(dir), null, 'no folder yet');
  assert.throws(() => exportFacts(dir, true), /config/);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.json'), JSON.stringify(gemma2));
  assert.deepEqual(exportFacts(dir), factsFor(gemma2));
  const print = stepPrints(base(exportFacts(dir))).export;
  const family = familyFor(gemma2) as { normOffset: 0 | 1 };
  const kept = family.normOffset;
  try {
    family.normOffset = kept === 1 ? 0 : 1; // as if the family file had been edited
    assert.notEqual(stepPrints(base(exportFacts(dir))).export, print);
  } finally {
    family.normOffset = kept;
  }
  assert.equal(stepPrints(base(exportFacts(dir))).export, print);
});

test('exportInputDir: the source folder, else the work folder\'s weights', () => {
  assert.equal(exportInputDir('/models/x', '/out/1'), '/models/x');
  assert.equal(exportInputDir(undefined, '/out/1'), join('/out/1', '.sphana-work', 'hf'));
});
