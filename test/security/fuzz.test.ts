import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, test } from 'node:test';
import { MUTATION_KINDS, inspectOutcome, mutate, rng } from '../../bench/fuzz-mutants.js';
import { fixture } from '../helpers/paths.js';

/**
 * A deterministic slice of the fuzz benchmark (bench/fuzz.ts runs ≥ 10,000): 360 mutants of
 * a few fixtures, 60 per mutation kind; every one gives a summary or a typed one-line error.
 */
const work = mkdtempSync(join(tmpdir(), 'sphana-fuzz-test-'));
after(() => rmSync(work, { recursive: true, force: true }));
cpSync(fixture('.'), work, { recursive: true, verbatimSymlinks: true });
const files = ['valid/mlp.onnx', 'valid/control_flow.onnx', 'valid/kv_optimum.onnx', 'valid/sparse_initializer.onnx',
  'valid/ext_offset/model.onnx', 'valid/pb_fields.onnx', 'hostile/pb_first_graph/model.onnx', 'hostile/control_chars/model.onnx'].map((f) => join(work, f));
const originals = files.map((f) => readFileSync(f));

for (const kind of MUTATION_KINDS) {
  test(`fuzz slice: 60 ${kind} mutants, each a summary or a typed error`, () => {
    const random = rng(MUTATION_KINDS.indexOf(kind) + 1);
    const tally = { summary: 0, typed: 0 };
    for (let i = 0; i < 60; i++) {
      const a = i % files.length;
      const bytes = mutate(originals[a], originals[Math.floor(random() * files.length)], kind, random);
      const path = join(dirname(files[a]), 'mutant.onnx');
      writeFileSync(path, bytes);
      const outcome = inspectOutcome(path);
      assert.notEqual(outcome.kind, 'bug', `${kind} #${i} of ${files[a]}: ${outcome.kind === 'bug' ? outcome.message : ''}`);
      tally[outcome.kind as 'summary' | 'typed'] += 1;
    }
    assert.equal(tally.summary + tally.typed, 60);
    // Structure-preserving mutations mostly still parse; byte-level damage mostly does not.
    if (kind === 'duplicate-field' || kind === 'concatenate') assert.ok(tally.summary > 30, JSON.stringify(tally));
    if (kind === 'truncate') assert.ok(tally.typed > 50, JSON.stringify(tally));
  });
}
