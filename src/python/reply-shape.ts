/**
 * Checks of a bridge reply's shape, for the parsers in entry-points.ts. They throw ShapeError;
 * callBridge turns it into E_BRIDGE_PROTOCOL naming the command, the request and the output.
 */

export class ShapeError extends Error {}

export interface BridgeFile { path: string; bytes: number }

export function object(value: unknown, what: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new ShapeError(`${what} is not an object`);
  return value as Record<string, unknown>;
}

export function string(value: unknown, what: string): string {
  if (typeof value !== 'string') throw new ShapeError(`${what} is not a string`);
  return value;
}

/** A finite number (of any sign). */
export function num(value: unknown, what: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) throw new ShapeError(`${what} is not a number`);
  return value;
}

/** A finite number ≥ 0 (an integer when asked). */
export function count(value: unknown, what: string, integer = false): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || (integer && !Number.isInteger(value))) {
    throw new ShapeError(`${what} is not a non-negative ${integer ? 'integer' : 'number'}`);
  }
  return value;
}

export const numOrNull = (value: unknown, what: string): number | null => (value === null || value === undefined ? null : num(value, what));

export function oneOf<T extends string>(value: unknown, allowed: readonly T[], what: string): T {
  if (!allowed.includes(value as T)) throw new ShapeError(`${what} is not one of ${allowed.join(', ')}`);
  return value as T;
}

export function record<T>(value: unknown, what: string, each: (v: unknown, what: string) => T): Record<string, T> {
  const o = object(value, what);
  return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, each(v, `${what}.${k}`)]));
}

export function list<T>(value: unknown, what: string, each: (v: unknown, what: string) => T): T[] {
  if (!Array.isArray(value)) throw new ShapeError(`${what} is not an array`);
  return value.map((v, i) => each(v, `${what}[${i}]`));
}

export const ids = (value: unknown, what: string): number[] => list(value, what, num);

export function files(value: unknown): BridgeFile[] {
  return list(value, 'files', (f, what) => {
    const o = object(f, what);
    if (typeof o.path !== 'string' || typeof o.bytes !== 'number') throw new ShapeError(`${what} is not {path, bytes}`);
    return { path: o.path, bytes: o.bytes };
  });
}
