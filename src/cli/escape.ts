/**
 * Terminal safety for everything sphana prints for people. Model files, manifests and hub
 * responses are untrusted: a string in them may carry control characters (C0, DEL, C1),
 * escape sequences (an OSC 52 clipboard write, cursor moves, a fake prompt) or bidi overrides.
 * Printed raw they would act on the terminal; here they become visible escapes instead.
 */

// C0 (0x00-0x1f), DEL, C1 (0x80-0x9f), bidi embeddings/overrides/isolates, line/paragraph separators.
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
const NAMED: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

function visible(c: string): string {
  const code = c.charCodeAt(0);
  return NAMED[c] ?? (code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`);
}

/** One untrusted string, made inert and single-line: every control character becomes `\xHH`, `\n`, ... */
export function escapeControl(text: string): string {
  return text.replace(UNSAFE, visible);
}

/** Every string inside `value` (objects, arrays; keys too) passed through escapeControl. */
export function escapeStrings<T>(value: T): T {
  if (typeof value === 'string') return escapeControl(value) as T;
  if (Array.isArray(value)) return value.map((v) => escapeStrings(v)) as T;
  const proto = value !== null && typeof value === 'object' ? Object.getPrototypeOf(value) : undefined;
  if (proto === Object.prototype || proto === null) {
    return Object.fromEntries(Object.entries(value as object).map(([k, v]) => [escapeControl(k), escapeStrings(v)])) as T;
  }
  return value;
}

// What sphana itself writes: SGR colour codes (chalk) and, in multi-line output, newlines.
const SGR = '\u001b\\[[0-9;]*m';

/**
 * The last line of defence, applied by the output sink to whole texts: escapes every control
 * character except newlines (and, when colour is on, the SGR colour sequences chalk wrote).
 * Renderers escape model strings themselves (escapeStrings), so a model's own SGR or newline
 * never gets this far unescaped.
 */
export function terminalSafe(text: string, options: { keepNewlines?: boolean; keepColour?: boolean } = {}): string {
  const keep = [options.keepColour ? SGR : null, options.keepNewlines ? '\\n' : null].filter(Boolean);
  if (!keep.length) return escapeControl(text);
  const pattern = new RegExp(`(${keep.join('|')})|${UNSAFE.source}`, 'g');
  return text.replace(pattern, (match: string, kept: string | undefined) => (kept !== undefined ? kept : visible(match)));
}

/**
 * A JSON text that is byte-for-byte safe on a terminal yet parses to the same value:
 * JSON.stringify already writes C0 as \u00XX; DEL, C1, bidi controls and U+2028/9 are
 * written as \u escapes too (they can only occur inside JSON strings).
 */
export function jsonTerminalSafe(json: string): string {
  return json.replace(/[\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
