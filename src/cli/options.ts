/**
 * The one way sphana's flags are parsed and validated: commander Options whose parser turns the
 * text into a typed value or refuses it. A refusal is a usage error (exit 2) of one line naming the
 * flag, the value given and what it accepts, before any work starts.
 */
import { InvalidArgumentError, Option } from 'commander';

/** A flag taking one word of a fixed list (help lists them). */
export function choiceOption<T extends string>(flags: string, description: string, choices: readonly T[], defaultValue?: T): Option {
  const option = new Option(flags, description).choices(choices);
  return defaultValue === undefined ? option : option.default(defaultValue);
}

/** A flag taking one number of a fixed list, e.g. bits 8 | 4. */
export function numberChoiceOption(flags: string, description: string, choices: readonly number[]): Option {
  return new Option(flags, description).argParser((raw: string) => {
    const n = /^\d+$/.test(raw) ? Number(raw) : NaN;
    if (!choices.includes(n)) throw new InvalidArgumentError(`Allowed choices are ${choices.join(', ')}.`);
    return n;
  });
}

/** A flag taking an integer in [min, max]. */
export function integerOption(flags: string, description: string, range: { min: number; max?: number }, defaultValue?: number): Option {
  const { min, max } = range;
  const option = new Option(flags, description).argParser((raw: string) => {
    const n = /^-?\d+$/.test(raw.trim()) ? Number(raw) : NaN;
    if (!Number.isSafeInteger(n) || n < min || (max !== undefined && n > max)) {
      throw new InvalidArgumentError(`It takes an integer ${max === undefined ? `≥ ${min}` : `from ${min} to ${max}`}.`);
    }
    return n;
  });
  return defaultValue === undefined ? option : option.default(defaultValue);
}

/** A flag taking a finite number in [min, max]. */
export function numberOption(flags: string, description: string, range: { min: number; max?: number }): Option {
  const { min, max } = range;
  return new Option(flags, description).argParser((raw: string) => {
    const n = raw.trim() === '' ? NaN : Number(raw);
    if (!Number.isFinite(n) || n < min || (max !== undefined && n > max)) {
      throw new InvalidArgumentError(`It takes a number ${max === undefined ? `≥ ${min}` : `from ${min} to ${max}`}.`);
    }
    return n;
  });
}

/** A flag taking a comma-separated list of words of a fixed list. */
export function listOption<T extends string>(flags: string, description: string, choices: readonly T[]): Option {
  return new Option(flags, description).argParser((raw: string) => {
    const items = raw.split(',').map((s) => s.trim()).filter(Boolean);
    const bad = items.filter((s) => !(choices as readonly string[]).includes(s));
    if (!items.length || bad.length) throw new InvalidArgumentError(`Allowed: a comma-separated list of ${choices.join(', ')}.`);
    return items as T[];
  });
}

/** commander's "error: …" lines in the shape of every other error of sphana's. */
export function usageErrorLine(text: string): string {
  return text.replace(/^error: /, 'error E_USAGE: ');
}
