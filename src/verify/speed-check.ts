import { checkResult, mb, withSeconds } from './check.js';
import type { PrecisionRun } from './run-precision.js';
import type { CheckResult } from './types.js';

/** Check 7, speed (informational, never a gate): prefill and decode tokens/s per precision, peak RSS. */
export function checkSpeed(runs: PrecisionRun[], threads: number): CheckResult {
  const started = performance.now();
  const seconds = runs.reduce((n, r) => n + r.seconds.speed, 0);
  const figures: Record<string, unknown> = { threads };
  const parts: string[] = [];
  for (const run of runs) {
    if (!run.speed) {
      figures[run.precision] = { error: run.error ?? 'did not run' };
      continue;
    }
    const s = run.speed;
    figures[run.precision] = s;
    parts.push(`${run.precision} prefill ${Math.round(s.prefillTokensPerSecond)} tok/s, decode ${s.decodeTokensPerSecond.toFixed(1)} tok/s, peak RSS ${mb(s.peakRssBytes)}`);
  }
  if (!parts.length) return withSeconds(checkResult('speed', 'skipped', started, figures, 'no model could be run'), seconds);
  return withSeconds(checkResult('speed', 'passed', started, figures, `${parts.join('; ')} (${threads} threads)`), seconds);
}
