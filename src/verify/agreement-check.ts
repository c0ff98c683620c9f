import { checkResult, sig, withSeconds } from './check.js';
import type { PrecisionRun } from './run-precision.js';
import type { AgreementThresholds, CheckResult } from './types.js';

/**
 * Check 5, agreement: each quantized model against fp32 over the fixed prompts, every
 * position: top-1 agreement, mean cosine of the logits and mean KL(fp32 || quantized) of the
 * next-token distributions, against the thresholds.
 */
export function checkAgreement(runs: PrecisionRun[], thresholds: AgreementThresholds, why: string | null): CheckResult {
  const started = performance.now();
  const seconds = runs.reduce((n, r) => n + r.seconds.agreement, 0);
  const figures: Record<string, unknown> = { thresholds };
  if (why) return withSeconds(checkResult('agreement', 'skipped', started, figures, why), seconds);
  const failures: string[] = [];
  const passes: string[] = [];
  for (const run of runs) {
    if (run.precision === 'fp32') continue;
    const a = run.agreement;
    if (!a) {
      figures[run.precision] = { error: run.error ?? 'not measured' };
      failures.push(`${run.precision}: ${run.error ?? 'not measured'}`);
      continue;
    }
    const f = { prompts: a.prompts, positions: a.positions, top1Agreement: sig(a.top1Agreement), meanCosine: sig(a.meanCosine, 6), meanKl: sig(a.meanKl), maxAbsDiff: sig(a.maxAbsDiff), perPrompt: a.perPrompt };
    figures[run.precision] = f;
    const text = `top-1 ${f.top1Agreement.toFixed(3)}, cosine ${f.meanCosine.toFixed(4)}, KL ${f.meanKl.toFixed(4)}`;
    const bad: string[] = [];
    if (!(a.top1Agreement >= thresholds.top1)) bad.push(`top-1 ${f.top1Agreement.toFixed(3)} < ${thresholds.top1}`);
    if (!(a.meanCosine >= thresholds.cosine)) bad.push(`cosine ${f.meanCosine.toFixed(4)} < ${thresholds.cosine}`);
    if (!(a.meanKl <= thresholds.kl)) bad.push(`KL ${f.meanKl.toFixed(4)} > ${thresholds.kl}`);
    if (bad.length) failures.push(`${run.precision} vs fp32 over ${a.prompts} prompts (${a.positions} positions): ${bad.join(', ')}`);
    else passes.push(`${run.precision} vs fp32 over ${a.prompts} prompts (${a.positions} positions): ${text}`);
  }
  if (failures.length) return withSeconds(checkResult('agreement', 'failed', started, figures, failures.join('; ')), seconds);
  if (!passes.length) return withSeconds(checkResult('agreement', 'skipped', started, figures, 'no quantized model to compare with fp32'), seconds);
  return withSeconds(checkResult('agreement', 'passed', started, figures, passes.join('; ')), seconds);
}
