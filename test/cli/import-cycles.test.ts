import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { test } from 'node:test';
import { ROOT } from '../helpers/paths.js';

/** Every relative import of a module in src/ (static, re-exports and import(); `import type` is erased and left out). */
function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const specs = [
    ...[...text.matchAll(/^\s*(?:import|export)(?!\s+type\b)[^'";]*?from\s+'(\.[^']+)'/gm)].map((m) => m[1]),
    ...[...text.matchAll(/\bimport\(\s*'(\.[^']+)'\s*\)/g)].map((m) => m[1]),
  ];
  return specs.map((s) => resolve(dirname(file), s.replace(/\.js$/, '.ts')));
}

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? sources(p) : p.endsWith('.ts') ? [p] : [];
  });
}

test('src/ has no import cycles (static or dynamic)', () => {
  const files = sources(join(ROOT, 'src'));
  assert.ok(files.length > 50);
  const graph = new Map(files.map((f) => [f, importsOf(f).filter((d) => files.includes(d))]));
  const state = new Map<string, 1 | 2>();
  const stack: string[] = [];
  const cycles: string[] = [];
  const visit = (n: string) => {
    state.set(n, 1);
    stack.push(n);
    for (const d of graph.get(n) ?? []) {
      if (state.get(d) === 1) cycles.push([...stack.slice(stack.indexOf(d)), d].map((x) => relative(ROOT, x)).join(' → '));
      else if (!state.get(d)) visit(d);
    }
    stack.pop();
    state.set(n, 2);
  };
  for (const f of files) if (!state.get(f)) visit(f);
  assert.deepEqual(cycles, []);
  // The detector does find cycles: main.ts → commands/inspect.ts was one before reportError moved.
  assert.ok(graph.get(join(ROOT, 'src/cli/main.ts'))!.includes(join(ROOT, 'src/commands/inspect.ts')));
});
