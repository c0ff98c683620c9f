import type { Precision } from '../manifest/schema.js';
import { checkResult, sig, withSeconds } from './check.js';
import type { PrecisionRun } from './run-precision.js';
import { CACHE_TOLERANCE, type CheckResult, cacheTolerance } from './types.js';


export interface Unavailable {
  precision: Precision;
  reason: string;
}

/**
 * Check 4, runtime: every precision loads in onnxruntime-node; a prefill from an empty cache
 * sized from the manifest plus N decode steps (presents fed back) gives the same logits as
 * one full-sequence run without cache, and the presents have the manifest's shape.
 */
export function checkRuntime(runs: PrecisionRun[], unavailable: Unavailable[]): CheckResult {
  const started = performance.now();
  const figures: Record<string, unknown> = {};
  const failures: string[] = [];
  const passes: string[] = [];
  for (const u of unavailable) figures[u.precision] = { skipped: u.reason };
  for (const run of runs) {
    const c = run.cache;
    const tolerance = c ? sig(cacheTolerance(run.precision, c.logitScale)) : null;
    figures[run.precision] = { model: run.path, loadSeconds: run.loadSeconds ?? null, tolerance, toleranceRule: CACHE_TOLERANCE[run.precision], ...(c ?? {}), ...(run.error ? { error: run.error } : {}) };
    if (!c) {
      failures.push(`${run.precision}: ${run.error ?? 'did not run'}`);
      continue;
    }
    if (c.presentProblems.length) failures.push(`${run.precision}: ${c.presentProblems[0]}`);
    const within = c.maxAbsDiff <= tolerance!;
    if (!within) {
      failures.push(`${run.precision}: cached decode differs from the full-sequence run by ${c.maxAbsDiff} (> ${tolerance}, logits up to ${c.logitScale}): the KV cache is not wired correctly`);
    }
    if (!c.presentProblems.length && within) passes.push(`${run.precision} max |Δ| ${c.maxAbsDiff.toExponential(1)} (≤ ${tolerance!.toExponential(1)})`);
  }
  const seconds = runs.reduce((n, r) => n + r.seconds.runtime, 0);
  const skippedNote = unavailable.length ? `; ${unavailable.map((u) => `${u.precision} not run (${u.reason})`).join('; ')}` : '';
  if (failures.length) return withSeconds(checkResult('runtime', 'failed', started, figures, `${failures.join('; ')}${skippedNote}`), seconds);
  if (!runs.length) return withSeconds(checkResult('runtime', 'skipped', started, figures, `no model could be run${skippedNote}`), seconds);
  const c = runs[0].cache!;
  return withSeconds(checkResult('runtime', 'passed', started, figures,
    `prefill ${c.promptTokens} + ${c.decodeSteps} cached steps match a full run: ${passes.join(', ')}${skippedNote}`), seconds);
}
