import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CALIBRATION } from '../../src/quality/calibration.js';
import { CORPUS } from '../../src/quality/corpus.js';

/** Word runs of length n (lower-cased, punctuation kept): the unit of "shared text". */
function runs(text: string, n: number): Set<string> {
  const words = text.toLowerCase().split(/\s+/).filter(Boolean);
  const out = new Set<string>();
  for (let i = 0; i + n <= words.length; i++) out.add(words.slice(i, i + n).join(' '));
  return out;
}

test('the calibration text shares no 5-word run with the gate corpus, and covers the same kinds of text', () => {
  const gate = new Set(CORPUS.flatMap((s) => [...runs(s.text, 5)]));
  const calib = CALIBRATION.flatMap((s) => [...runs(s.text, 5)]);
  assert.ok(calib.length > 250, `${calib.length} runs`);
  assert.deepEqual(calib.filter((r) => gate.has(r)), []);
  // the CJK segment has no spaces between words: no shared 8-character substring either
  const cjkGate = CORPUS.find((s) => s.name === 'chinese-japanese-russian')!.text;
  const cjk = CALIBRATION.find((s) => s.name === 'chinese-japanese-russian')!.text;
  for (let i = 0; i + 8 <= cjk.length; i++) assert.ok(!cjkGate.includes(cjk.slice(i, i + 8)), cjk.slice(i, i + 8));
  assert.deepEqual(CALIBRATION.map((s) => s.name), CORPUS.map((s) => s.name));
});
