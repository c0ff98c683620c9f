import { checkResult, withSeconds } from './check.js';
import type { PrecisionRun } from './run-precision.js';
import type { LoadedTokenizer } from './tokenizer-load.js';
import type { CheckResult } from './types.js';

/** Check 6, sample (informational): greedy generation per precision, decoded to text. */
export function checkSample(runs: PrecisionRun[], tokenizer: LoadedTokenizer | null, prompt: string, eos: number[]): CheckResult {
  const started = performance.now();
  const seconds = runs.reduce((n, r) => n + r.seconds.sample, 0);
  const figures: Record<string, unknown> = { prompt };
  const lines: string[] = [];
  for (const run of runs) {
    if (!run.sample) {
      figures[run.precision] = { error: run.error ?? 'did not run' };
      continue;
    }
    const stop = run.sample.tokens.findIndex((t) => eos.includes(t));
    const tokens = stop >= 0 ? run.sample.tokens.slice(0, stop + 1) : run.sample.tokens;
    const text = tokenizer ? tokenizer.decode(tokens) : null;
    figures[run.precision] = { tokens, text, stoppedAtEos: stop >= 0 };
    lines.push(`${run.precision}: ${text === null ? `[${tokens.join(' ')}]` : JSON.stringify(text)}`);
  }
  if (!lines.length) return withSeconds(checkResult('sample', 'skipped', started, figures, 'no model could be run'), seconds);
  return withSeconds(checkResult('sample', 'passed', started, figures, lines.join('; ')), seconds);
}
