import type { CheckName, CheckResult, CheckStatus, Figures } from './types.js';

/** Builds a CheckResult; `started` is a performance.now() reading. */
export function checkResult(name: CheckName, status: CheckStatus, started: number, figures: Figures, message: string): CheckResult {
  return { name, status, passed: status === 'passed', seconds: round((performance.now() - started) / 1000, 3), figures, message };
}

export function round(value: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

/** Keeps a few significant digits for figures (JSON stays readable, numbers stay honest). */
export function sig(value: number, digits = 4): number {
  if (!Number.isFinite(value) || value === 0) return value;
  return Number(value.toPrecision(digits));
}

export function mb(bytes: number): string {
  return bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(2)} GB` : `${(bytes / 2 ** 20).toFixed(1)} MB`;
}

/** "a, b and 3 more" for messages. */
export function listSome(items: string[], max = 3): string {
  if (items.length <= max) return items.join(', ');
  return `${items.slice(0, max).join(', ')} and ${items.length - max} more`;
}

/** The same result with the seconds given (for checks whose work was interleaved with others). */
export function withSeconds(result: CheckResult, seconds: number): CheckResult {
  return { ...result, seconds: round(seconds, 3) };
}
