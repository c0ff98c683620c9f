import assert from 'node:assert/strict';
import { test } from 'node:test';
import { UsageError } from '../../src/errors.js';
import { parseQuantFlags } from '../../src/quantize/cli-options.js';
import { EQUALIZE_ALPHA, settingsLadder } from '../../src/quantize/run.js';

test('the INT8 ladder: level 4, then the sensitive MatMuls at level 0, then level 0 everywhere', () => {
  assert.deepEqual(settingsLadder('int8', {}).map((s) => s.request), [
    { int8Scheme: 'weight-only', accuracyLevel: 4 },
    { int8Scheme: 'weight-only', accuracyLevel: 4, headAccuracyLevel: 0, gatedAccuracyLevel: 0 },
    { int8Scheme: 'weight-only', accuracyLevel: 0 },
  ]);
  assert.deepEqual(settingsLadder('int8', { accuracyLevel: 2 }).map((s) => [s.label, s.request]), [['weight-only level 2', { int8Scheme: 'weight-only', accuracyLevel: 2 }]]);
  assert.deepEqual(settingsLadder('int8', { int8Scheme: 'dynamic' }).map((s) => s.request), [{ int8Scheme: 'dynamic' }]);
  assert.deepEqual(settingsLadder('int4', { int4: { blockSize: 64, symmetric: true } })[0].request, { blockSize: 64, symmetric: true, accuracyLevel: 4 });
});

test('the INT4 ladder: integer zero points at level 4, then float zero points (rtn-float-zp) for that rung and the later ones; a fixed algorithm or --symmetric keeps its quantizer', () => {
  assert.deepEqual(settingsLadder('int4', {}).map((s) => [s.label, s.request]), [
    ['int4 level 4', { accuracyLevel: 4 }],
    ['int4 rtn-float-zp level 4', { algorithm: 'rtn-float-zp', accuracyLevel: 4 }],
    ['int4 rtn-float-zp level 4, LM head and gated-MLP down projections level 0', { algorithm: 'rtn-float-zp', accuracyLevel: 4, headAccuracyLevel: 0, gatedAccuracyLevel: 0 }],
    ['int4 rtn-float-zp level 0', { algorithm: 'rtn-float-zp', accuracyLevel: 0 }],
  ]);
  assert.deepEqual(settingsLadder('int4', { int4: { blockSize: 64 } }).map((s) => s.request.algorithm), [undefined, 'rtn-float-zp', 'rtn-float-zp', 'rtn-float-zp']);
  for (const int4 of [{ algorithm: 'rtn' as const }, { algorithm: 'hqq' as const }, { symmetric: true }]) {
    const ladder = settingsLadder('int4', { int4 });
    assert.equal(ladder.length, 3, JSON.stringify(int4));
    assert.ok(ladder.every((s) => s.request.algorithm === int4.algorithm), JSON.stringify(int4));
  }
  assert.deepEqual(settingsLadder('int4', { accuracyLevel: 4 }).map((s) => s.request), [{ accuracyLevel: 4 }]);
});

test('with a real tokenizer (calibration ids), INT8 rung 1 is level 4 equalized; INT4 and the dynamic scheme are not equalized', () => {
  assert.deepEqual(settingsLadder('int8', {}, true).map((s) => s.request), [
    { int8Scheme: 'weight-only', accuracyLevel: 4, equalize: EQUALIZE_ALPHA },
    { int8Scheme: 'weight-only', accuracyLevel: 4, headAccuracyLevel: 0, gatedAccuracyLevel: 0 },
    { int8Scheme: 'weight-only', accuracyLevel: 0 },
  ]);
  assert.equal(EQUALIZE_ALPHA, 0.5);
  assert.deepEqual(settingsLadder('int8', { accuracyLevel: 4 }, true).map((s) => s.request), [{ int8Scheme: 'weight-only', accuracyLevel: 4, equalize: 0.5 }]);
  assert.deepEqual(settingsLadder('int8', { accuracyLevel: 0 }, true).map((s) => s.request), [{ int8Scheme: 'weight-only', accuracyLevel: 0 }]);
  assert.deepEqual(settingsLadder('int8', { int8Scheme: 'dynamic' }, true).map((s) => s.request), [{ int8Scheme: 'dynamic' }]);
  assert.ok(settingsLadder('int4', {}, true).every((s) => s.request.equalize === undefined));
});

test('quantization flags: combined, and refused where they do not apply', () => {
  assert.deepEqual(parseQuantFlags('int8', { accuracyLevel: 0, int8Scheme: 'weight-only' }), { int8Scheme: 'weight-only', accuracyLevel: 0 });
  assert.deepEqual(parseQuantFlags('int4', { blockSize: 128, headBits: 4, embeddingBits: 4, symmetric: true, int4Algorithm: 'hqq' }),
    { int4: { blockSize: 128, symmetric: true, headBits: 4, embeddingBits: 4, algorithm: 'hqq' } });
  // Each value alone is checked when commander parses it (test/cli/options.test.ts); these are the combinations.
  for (const [p, f] of [['int8', { blockSize: 64 }], ['int8', { symmetric: true }], ['int8', { headBits: 4 }], ['int8', { int4Algorithm: 'hqq' }],
    ['int4', { int8Scheme: 'dynamic' }], ['int4', { symmetric: true, int4Algorithm: 'rtn-float-zp' }], ['int8', { int8Scheme: 'dynamic', accuracyLevel: 4 }]] as const) {
    assert.throws(() => parseQuantFlags(p, f), UsageError, JSON.stringify(f));
  }
});
