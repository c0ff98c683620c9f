import type { QualityText } from '../quality/corpus-ids.js';
import { type QualityReport, type QuantizedPrecision, qualityReport } from '../quality/gates.js';
import { checkResult, withSeconds } from './check.js';
import type { PrecisionRun } from './run-precision.js';
import type { AppliedGates, CheckResult } from './types.js';

/**
 * Check 5, agreement: each quantized model against fp32 on the shipped corpus through the
 * artifact's tokenizer (synthetic ids only when the tokenizer is synthetic or cannot encode
 * for the model), teacher-forced, every position: margin-aware and plain top-1, mean cosine,
 * mean KL(fp32 ‖ quantized), perplexity of both. Each precision is judged by its family's gate.
 * figures.quality holds the quality section per precision (what the manifest records).
 */
export function checkAgreement(runs: PrecisionRun[], gates: AppliedGates, why: string | null, text?: QualityText): CheckResult {
  const started = performance.now();
  const seconds = runs.reduce((n, r) => n + r.seconds.agreement, 0);
  const figures: Record<string, unknown> = { thresholds: gates };
  if (text) figures.text = { source: text.source, corpusVersion: text.corpusVersion, sequences: text.sequences.length, ...(text.why ? { why: text.why } : {}) };
  if (why) return withSeconds(checkResult('agreement', 'skipped', started, figures, why), seconds);
  const failures: string[] = [];
  const passes: string[] = [];
  const quality: Partial<Record<QuantizedPrecision, QualityReport>> = {};
  const what = text?.source === 'synthetic' ? 'synthetic ids' : 'the corpus';
  for (const run of runs) {
    if (run.precision === 'fp32') continue;
    const precision = run.precision as QuantizedPrecision;
    const a = run.agreement;
    const gate = gates[precision];
    if (!a || !gate) {
      figures[precision] = { error: run.error ?? 'not measured' };
      failures.push(`${precision}: ${run.error ?? 'not measured'}`);
      continue;
    }
    const q = qualityReport(precision, a, gate, { source: text?.source ?? 'corpus', corpusVersion: text?.corpusVersion ?? 0, sequences: a.prompts });
    quality[precision] = q;
    figures[precision] = {
      prompts: a.prompts, positions: a.positions, top1Agreement: q.top1, nearTieTop1: q.nearTieTop1, meanCosine: q.meanCosine,
      meanKl: q.meanKl, maxKl: q.maxKl, maxAbsDiff: Number(a.maxAbsDiff.toPrecision(4)), ppl: q.ppl, perPrompt: a.perPrompt,
    };
    const line = `${precision} vs fp32 on ${what} (${a.positions} positions): ${q.reason}`;
    if (q.passed) passes.push(line);
    else failures.push(line);
  }
  figures.quality = quality;
  if (failures.length) return withSeconds(checkResult('agreement', 'failed', started, figures, failures.join('; ')), seconds);
  if (!passes.length) return withSeconds(checkResult('agreement', 'skipped', started, figures, 'no quantized model to compare with fp32'), seconds);
  return withSeconds(checkResult('agreement', 'passed', started, figures, passes.join('; ')), seconds);
}
