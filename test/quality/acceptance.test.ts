import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { inspectFile } from '../../src/onnx/summary.js';
import { checkQuantizedOutput, referenceLogits } from '../../src/quantize/checks.js';
import { LLAMA3_TOKENIZER, type Models, Scratch, buildModels } from '../verify/fixture.js';

// The quantize acceptance check (the function the quantizer calls to accept a strategy or a
// setting) on the verify tests' tiny model: the corpus through Llama 3's tokenizer,
// teacher-forced against fp32, judged by the int8 gate.
let models: Models;
const scratch = new Scratch();
before(() => { models = buildModels(); });
after(() => scratch.cleanup(models?.root ?? ''));

test('the acceptance check passes a correct INT8 twin on the corpus and carries the figures', async () => {
  const fp32 = inspectFile(join(models.root, 'fp32', 'llm_generator.onnx'));
  const reference = referenceLogits(fp32, { threads: 2, tokenizer: { dir: LLAMA3_TOKENIZER, synthetic: false } });
  const ref = await reference();
  assert.equal(ref!.text.source, 'corpus');
  assert.deepEqual(ref!.text.sequences.map((s) => s.length), [86, 109, 108, 90, 76, 75]);
  assert.equal(ref!.logits.reduce((n, l) => n + l.length, 0), 544 * 128256);

  const good = await checkQuantizedOutput(fp32, join(models.root, 'int8', 'llm_generator.int8.onnx'), { threads: 2, reference, precision: 'int8' });
  assert.equal(good.ok, true, good.reason);
  assert.deepEqual(good.failures, []);
  const q = good.quality!;
  assert.equal(q.text, 'corpus');
  assert.equal(q.positions, 544);
  assert.equal(q.scoredTokens, 538);
  assert.ok(q.nearTieTop1 >= 0.98 && q.meanKl <= 0.01 && q.meanCosine >= 0.99, JSON.stringify(q));
  assert.ok(q.ppl && Math.abs(q.ppl.deltaPercent) < 5, JSON.stringify(q.ppl));
  assert.match(good.reason, /^int8: top-1 \d\.\d{3} \(plain \d\.\d{3}\), cosine 0\.\d{4}, KL \d\.\d{4}, ppl [\d.]+ → [\d.]+$/);

  // The zeroed twin (every decoder weight at its zero point) fails, and says why.
  const bad = await checkQuantizedOutput(fp32, join(models.root, 'zeroed', 'llm_generator.int8.onnx'), { threads: 2, reference, precision: 'int8' });
  assert.equal(bad.ok, false);
  assert.match(bad.reason, /^int8 quality gate on the corpus \(544 positions\): .*cosine 0\.\d+ < 0\.98/);
  assert.ok(bad.quality!.meanCosine < 0.95 && bad.quality!.passed === false);
  // Overrides of the gate apply.
  const loose = await checkQuantizedOutput(fp32, join(models.root, 'zeroed', 'llm_generator.int8.onnx'), { threads: 2, reference, precision: 'int8', gate: { cosine: 0.5, kl: 1, top1: 0.5 } });
  assert.equal(loose.ok, true, loose.reason);
});

test('without a tokenizer the acceptance check feeds synthetic ids (and says so)', async () => {
  const fp32 = inspectFile(join(models.root, 'fp32', 'llm_generator.onnx'));
  const reference = referenceLogits(fp32, { threads: 2, tokenizer: null });
  const ref = await reference();
  assert.equal(ref!.text.source, 'synthetic');
  assert.equal(ref!.text.sequences.length, 6);
  const good = await checkQuantizedOutput(fp32, join(models.root, 'int8', 'llm_generator.int8.onnx'), { threads: 2, reference });
  assert.equal(good.ok, true, good.reason);
  assert.equal(good.quality!.text, 'synthetic');
  assert.equal(good.quality!.ppl, null);
});
