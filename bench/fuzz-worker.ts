/**
 * The fuzz worker: `node dist/bench/fuzz-worker.js DIR SEED COUNT` mutates every .onnx under DIR
 * (a private copy of the fixtures), writes each mutant next to its original (so relative
 * external data resolves as it would) and inspects it in-process. Prints a progress line every
 * 250 mutants and, at the end, one JSON line of counts. Run under /usr/bin/time for peak RSS.
 */
import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { MUTATION_KINDS, inspectOutcome, mutate, rng } from './fuzz-mutants.js';

function onnxFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    const stat = statSync(path, { throwIfNoEntry: false });
    if (!stat) return [];
    if (stat.isDirectory()) return onnxFiles(path);
    return name.endsWith('.onnx') && !name.startsWith('mutant') ? [path] : [];
  }).sort();
}

const [dir, seedText, countText] = process.argv.slice(2);
const files = onnxFiles(dir).filter((f) => statSync(f).size > 0);
const originals = files.map((f) => readFileSync(f));
const random = rng(Number(seedText));
const count = Number(countText);
const byKind: Record<string, { summary: number; typed: number; bug: number }> = {};
const codes: Record<string, number> = {};
const bugs: Array<{ file: string; kind: string; mutant: string; message: string }> = [];
let slowestMs = 0;
const started = performance.now();
for (let i = 0; i < count; i++) {
  const a = Math.floor(random() * files.length);
  const b = Math.floor(random() * files.length);
  const kind = MUTATION_KINDS[i % MUTATION_KINDS.length];
  const bytes = mutate(originals[a], originals[b], kind, random);
  const path = join(dirname(files[a]), 'mutant.onnx');
  writeFileSync(path, bytes);
  const t = performance.now();
  const outcome = inspectOutcome(path);
  slowestMs = Math.max(slowestMs, performance.now() - t);
  const row = (byKind[kind] ??= { summary: 0, typed: 0, bug: 0 });
  row[outcome.kind] += 1;
  if (outcome.kind === 'typed') codes[outcome.code] = (codes[outcome.code] ?? 0) + 1;
  if (outcome.kind === 'bug' && bugs.length < 20) {
    const keep = join(dirname(files[a]), `mutant-bug-${i}.onnx`);
    writeFileSync(keep, bytes);
    bugs.push({ file: files[a], kind, mutant: keep, message: outcome.message.slice(0, 2000) });
  }
  if ((i + 1) % 250 === 0) process.stdout.write(`progress ${i + 1}\n`);
}
process.stdout.write(`${JSON.stringify({ count, files: files.length, seconds: (performance.now() - started) / 1000, slowestMs, byKind, codes, bugs })}\n`);
