/**
 * Deterministic mutants of ONNX files for the reader fuzz (bench/fuzz.ts, and a small slice in
 * test/security/fuzz.test.ts): field duplication (at any depth, lengths fixed up), message
 * concatenation, length-prefix edits, truncation and bit flips. And the oracle: every mutant
 * must give a summary (rendered both ways) or a typed one-line error.
 */
import { isSphanaError } from '../src/errors.js';
import { renderSummary } from '../src/commands/inspect-render.js';
import { inspectFile, toJsonLine } from '../src/onnx/summary.js';

/** A small deterministic PRNG (mulberry32). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Field { key: Buffer; wire: number; raw: Buffer; children?: Field[] }

function readVarint(b: Buffer, pos: number, end: number): [number, number] | null {
  let v = 0, scale = 1;
  for (let i = 0; i < 10 && pos < end; i++) {
    const byte = b[pos++];
    v += (byte & 0x7f) * scale;
    scale *= 128;
    if (byte < 0x80) return [v, pos];
  }
  return null;
}

export function varint(n: number): Buffer {
  const out: number[] = [];
  while (n > 127) { out.push((n % 128) | 128); n = Math.floor(n / 128); }
  out.push(n);
  return Buffer.from(out);
}

/** Parses [start, end) as a message, or null if it is not one. Length-delimited payloads that parse are kept as children. */
function parse(b: Buffer, start: number, end: number, depth: number): Field[] | null {
  const fields: Field[] = [];
  let pos = start;
  while (pos < end) {
    const k = readVarint(b, pos, end);
    if (!k) return null;
    const [key, afterKey] = k;
    const wire = key % 8;
    if (Math.floor(key / 8) === 0) return null;
    let payloadEnd: number;
    let children: Field[] | undefined;
    if (wire === 0) {
      const v = readVarint(b, afterKey, end);
      if (!v) return null;
      payloadEnd = v[1];
    } else if (wire === 1) payloadEnd = afterKey + 8;
    else if (wire === 5) payloadEnd = afterKey + 4;
    else if (wire === 2) {
      const l = readVarint(b, afterKey, end);
      if (!l) return null;
      payloadEnd = l[1] + l[0];
      if (payloadEnd > end) return null;
      if (depth < 12 && l[0] > 0) children = parse(b, l[1], payloadEnd, depth + 1) ?? undefined;
      if (children) { fields.push({ key: b.subarray(pos, afterKey), wire, raw: b.subarray(pos, payloadEnd), children }); pos = payloadEnd; continue; }
    } else return null;
    if (payloadEnd > end) return null;
    fields.push({ key: b.subarray(pos, afterKey), wire, raw: b.subarray(pos, payloadEnd) });
    pos = payloadEnd;
  }
  return fields;
}

function serialize(fields: Field[]): Buffer {
  return Buffer.concat(fields.map((f) => {
    if (!f.children) return f.raw;
    const body = serialize(f.children);
    return Buffer.concat([f.key, varint(body.length), body]);
  }));
}

/** Every field list in the tree (the root's and each nested message's). */
function lists(fields: Field[], out: Field[][] = []): Field[][] {
  out.push(fields);
  for (const f of fields) if (f.children) lists(f.children, out);
  return out;
}

/** Offsets of every length prefix in the tree: [offset of the varint, its byte length, value]. */
function lengthPrefixes(b: Buffer): Array<[number, number, number]> {
  const out: Array<[number, number, number]> = [];
  const walk = (start: number, end: number, depth: number) => {
    let pos = start;
    while (pos < end) {
      const k = readVarint(b, pos, end);
      if (!k) return;
      const wire = k[0] % 8;
      pos = k[1];
      if (wire === 0) { const v = readVarint(b, pos, end); if (!v) return; pos = v[1]; }
      else if (wire === 1) pos += 8;
      else if (wire === 5) pos += 4;
      else if (wire === 2) {
        const l = readVarint(b, pos, end);
        if (!l) return;
        out.push([pos, l[1] - pos, l[0]]);
        if (depth < 12) walk(l[1], Math.min(end, l[1] + l[0]), depth + 1);
        pos = l[1] + l[0];
      } else return;
    }
  };
  walk(0, b.length, 0);
  return out;
}

export type MutationKind = 'duplicate-field' | 'concatenate' | 'length-edit' | 'truncate' | 'bit-flip' | 'splice';
export const MUTATION_KINDS: MutationKind[] = ['duplicate-field', 'concatenate', 'length-edit', 'truncate', 'bit-flip', 'splice'];

/** One mutant of `bytes` (other: a second file for concatenation and splicing). */
export function mutate(bytes: Buffer, other: Buffer, kind: MutationKind, random: () => number): Buffer {
  const pick = <T>(list: T[]): T => list[Math.floor(random() * list.length)];
  switch (kind) {
    case 'duplicate-field': {
      const tree = parse(bytes, 0, bytes.length, 0);
      if (!tree) return mutate(bytes, other, 'bit-flip', random);
      const candidates = lists(tree).filter((l) => l.length > 0);
      const list = pick(candidates);
      const i = Math.floor(random() * list.length);
      // A copy of one field (a singular message field occurring twice is what protobuf merges),
      // placed right after it or at the end of its message.
      const copy = list[i];
      if (random() < 0.5) list.splice(i + 1, 0, copy);
      else list.push(copy);
      return serialize(tree);
    }
    case 'concatenate':
      return random() < 0.5 ? Buffer.concat([bytes, other]) : Buffer.concat([bytes, bytes]);
    case 'length-edit': {
      const prefixes = lengthPrefixes(bytes);
      if (!prefixes.length) return mutate(bytes, other, 'truncate', random);
      const [at, size, value] = pick(prefixes);
      const choices = [value + 1, Math.max(0, value - 1), 0, value * 2 + 1, 0x7fffffff, 2 ** 40, value + Math.floor(random() * 64)];
      const next = pick(choices);
      return Buffer.concat([bytes.subarray(0, at), varint(next), bytes.subarray(at + size)]);
    }
    case 'truncate':
      return bytes.subarray(0, Math.floor(random() * bytes.length));
    case 'bit-flip': {
      const out = Buffer.from(bytes);
      const flips = 1 + Math.floor(random() * 8);
      for (let i = 0; i < flips && out.length; i++) out[Math.floor(random() * out.length)] ^= 1 << Math.floor(random() * 8);
      return out;
    }
    case 'splice': {
      // A field of the other file inserted into a random message of this one.
      const tree = parse(bytes, 0, bytes.length, 0);
      const donor = parse(other, 0, other.length, 0);
      if (!tree || !donor) return mutate(bytes, other, 'concatenate', random);
      const fields = lists(donor).flat();
      if (!fields.length) return mutate(bytes, other, 'concatenate', random);
      const list = pick(lists(tree));
      list.splice(Math.floor(random() * (list.length + 1)), 0, pick(fields));
      return serialize(tree);
    }
  }
}

export type Outcome = { kind: 'summary' } | { kind: 'typed'; code: string } | { kind: 'bug'; message: string };

/** Inspects one file the way the CLI does (summary, both renderings) and classifies the outcome. */
export function inspectOutcome(path: string): Outcome {
  try {
    const summary = inspectFile(path);
    toJsonLine(summary);
    renderSummary(summary);
    return { kind: 'summary' };
  } catch (error) {
    if (isSphanaError(error) && error.exitCode === 3 && !error.message.includes('\n')) return { kind: 'typed', code: error.code };
    return { kind: 'bug', message: error instanceof Error ? `${error.name}: ${error.message}\n${error.stack ?? ''}` : String(error) };
  }
}
